"""`rdma` transport (pyverbs). Importing this package never imports pyverbs:
selection runs device.check_available, which fails with a clear
TransportUnavailable when there is no device or no pyverbs."""
from inference.transfer.base import Transport
from inference.transfer.rdma.device import check_available
from inference.transfer.rdma.transport import RdmaReceiver, RdmaSender

TRANSPORT = Transport("rdma", RdmaSender, RdmaReceiver, check_available)

"""cuda_memcpy without a GPU: finding the loaded CUDA runtime, the copy_ fallback switch, and the
error a failed cudaMemcpyAsync raises."""
import types

import pytest

from inference.transfer import TransferError, cuda_memcpy


def test_loaded_runtimes_reads_the_mapped_libraries(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n"
        "7f02-7f03 r-xp 00000000 08:01 2 /site/nvidia/cuda_runtime/lib/libcudart.so.12\n"
        "7f03-7f04 r--p 00001000 08:01 2 /site/nvidia/cuda_runtime/lib/libcudart.so.12\n"
        "7f05-7f06 rw-p 00000000 00:00 0\n")
    assert cuda_memcpy.loaded_runtimes(str(maps)) == ["/site/nvidia/cuda_runtime/lib/libcudart.so.12"]
    assert cuda_memcpy.loaded_runtimes(str(tmp_path / "absent")) == []


def test_torch_switch_and_no_runtime_give_none(monkeypatch):
    monkeypatch.setenv(cuda_memcpy.COPY_ENV, "torch")
    assert cuda_memcpy.runtime() is None
    monkeypatch.delenv(cuda_memcpy.COPY_ENV)
    monkeypatch.setattr(cuda_memcpy, "loaded_runtimes", lambda maps="": [])
    cuda_memcpy._find.cache_clear()
    assert cuda_memcpy.runtime() is None
    assert cuda_memcpy._find.cache_info().currsize == 0  # not kept: CUDA may load the runtime later


def _fake_lib(result: int):
    calls = []

    def memcpy(dst, src, n, kind, stream):
        calls.append((dst, src, n, kind, stream))
        return result
    def last_error():
        calls.append("cleared")
        return result
    return types.SimpleNamespace(cudaMemcpyAsync=memcpy, cudaGetErrorString=lambda err: b"invalid argument",
                                 cudaGetLastError=last_error), calls


def test_runtime_copy_passes_its_arguments_and_names_a_failure():
    lib, calls = _fake_lib(0)
    cuda_memcpy.RuntimeCopy(lib, "libcudart.so.12")(1000, 2000, 64, 7)
    assert calls == [(1000, 2000, 64, 4, 7)]  # cudaMemcpyDefault: same device or a peer's
    lib, calls = _fake_lib(1)
    with pytest.raises(cuda_memcpy.RuntimeCopyError, match=r"cudaMemcpyAsync of 64 bytes failed: invalid argument \(1\)"):
        cuda_memcpy.RuntimeCopy(lib, "libcudart.so.12")(1000, 2000, 64, 7)
    assert calls[-1] == "cleared"  # torch's next launch check must not see this error
    assert issubclass(cuda_memcpy.RuntimeCopyError, TransferError)


@pytest.mark.parametrize("paths, cuda, want", [
    (["/x/libcudart.so.12"], "12.8", "/x/libcudart.so.12"),
    (["/x/libcudart.so.12.8.90"], "12.8", "/x/libcudart.so.12.8.90"),
    (["/x/libcudart.so.13"], "12.8", None),  # another major: not torch's
    (["/x/libcudart.so.12", "/y/libcudart.so.12"], "12.8", None),  # two runtimes: which is torch's is unknown
    (["/x/libcudart.so"], "12.8", None),
    ([], "12.8", None),
    (["/x/libcudart.so.12"], None, None),  # a CPU build of torch
])
def test_only_torchs_one_runtime_is_used(paths, cuda, want):
    assert cuda_memcpy.torch_runtime(paths, cuda) == want

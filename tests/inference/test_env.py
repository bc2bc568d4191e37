"""env_flag: which values of a switch variable turn it on."""
import pytest

from inference.env import env_flag, env_int


@pytest.mark.parametrize("value,on", [(None, False), ("", False), ("0", False), (" false ", False), ("NO", False),
                                      ("1", True), ("yes", True), ("True", True), ("anything", True)])
def test_env_flag(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv("DOCPIPE_TEST_FLAG", raising=False)
    else:
        monkeypatch.setenv("DOCPIPE_TEST_FLAG", value)
    assert env_flag("DOCPIPE_TEST_FLAG") is on


@pytest.mark.parametrize("value,on", [(None, True), ("", True), ("0", False), ("off", False), ("no", False),
                                      ("1", True), ("on", True)])
def test_env_flag_default_on(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv("DOCPIPE_TEST_FLAG", raising=False)
    else:
        monkeypatch.setenv("DOCPIPE_TEST_FLAG", value)
    assert env_flag("DOCPIPE_TEST_FLAG", default=True) is on


def test_env_int(monkeypatch):
    monkeypatch.delenv("DOCPIPE_TEST_INT", raising=False)
    assert env_int("DOCPIPE_TEST_INT", 3) == 3
    monkeypatch.setenv("DOCPIPE_TEST_INT", " 7 ")
    assert env_int("DOCPIPE_TEST_INT", 3) == 7
    monkeypatch.setenv("DOCPIPE_TEST_INT", "seven")
    with pytest.raises(ValueError, match="DOCPIPE_TEST_INT must be an integer"):
        env_int("DOCPIPE_TEST_INT", 3)


def test_switch_interval_default_override_and_bad_values(monkeypatch):
    import sys

    from inference.env import SWITCH_INTERVAL_ENV, set_switch_interval

    before = sys.getswitchinterval()
    try:
        monkeypatch.delenv(SWITCH_INTERVAL_ENV, raising=False)
        assert set_switch_interval() == pytest.approx(0.0005) == sys.getswitchinterval()
        monkeypatch.setenv(SWITCH_INTERVAL_ENV, "5")
        assert set_switch_interval() == pytest.approx(0.005) == sys.getswitchinterval()
        for bad in ("fast", "0", "-1"):
            monkeypatch.setenv(SWITCH_INTERVAL_ENV, bad)
            with pytest.raises(ValueError, match=SWITCH_INTERVAL_ENV):
                set_switch_interval()
    finally:
        sys.setswitchinterval(before)

"""train.interrupts: a signal only sets a flag, consulted at safe points; during start-up that stops
with Interrupted (exit status 128 + the signal), never a KeyboardInterrupt in the middle of
whatever runs; the handlers are restored afterwards when fit installed them itself."""
import os
import signal

import pytest

from train import interrupts


def test_a_signal_sets_the_flag_and_start_up_stops_at_the_next_check():
    before = signal.getsignal(signal.SIGINT)
    with interrupts.stop_signals() as stop:
        assert stop.signal is None
        stop.check()
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt here
        assert stop.signal == "SIGINT"
        with pytest.raises(interrupts.Interrupted) as e:
            stop.check()
    assert signal.getsignal(signal.SIGINT) is before
    assert e.value.exit_code == 130 and isinstance(e.value, KeyboardInterrupt)
    assert str(e.value) == "SIGINT received during start-up: stopped before training, nothing was saved"
    assert interrupts.Interrupted("SIGTERM").exit_code == 143

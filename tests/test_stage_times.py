"""abag.stage_times: named wall-clock stages, nested ones subtracted, repeated ones added, printed in one line."""

from __future__ import annotations

import time

import pytest

from abag.stage_times import StageTimes, beside, recording, stage


def test_stages_add_up_repeat_and_exclude_nested_ones():
    with recording() as times:
        with stage("outer"):
            time.sleep(0.05)
            with stage("inner"):
                time.sleep(0.1)
        with stage("inner"):
            time.sleep(0.05)
        time.sleep(0.03)  # no stage: "other"
    assert list(times.seconds) == ["outer", "inner"]
    assert times.seconds["outer"] == pytest.approx(0.05, abs=0.03)  # its nested 0.1 s counted once, as inner
    assert times.seconds["inner"] == pytest.approx(0.15, abs=0.04)
    assert sum(times.seconds.values()) + times.other == pytest.approx(times.total)
    assert times.other == pytest.approx(0.03, abs=0.03)
    assert set(times.cpu_seconds) == {"outer", "inner"} and times.cpu_seconds["inner"] < 0.1  # asleep, no CPU


def test_stage_outside_a_recording_only_runs_its_block():
    ran = []
    with stage("alone"):
        ran.append(1)
    assert ran == [1]
    with recording() as times:
        pass
    assert times.seconds == {} and times.summary().startswith("stage times: none (other")


def test_summary_is_one_line_in_first_run_order():
    times = StageTimes({"load": 3.14, "encode": 58.2, "train": 0.04}, total=65.0)
    assert times.summary() == "stage times: load 3.1 s, encode 58 s, train 0.0 s (other 3.6 s; total 65 s)"


def test_work_beside_the_stages_is_reported_apart_and_counted_in_no_stage():
    with recording() as times:
        with stage("train"):
            beside("nearest chains", 21.0)
            beside("nearest chains", 1.5)  # adds up, like a repeated stage
    beside("outside", 1.0)  # no recording open: nothing
    assert times.beside_seconds == {"nearest chains": 22.5}
    assert sum(times.seconds.values()) <= times.total  # the background seconds are no stage's
    assert times.summary().endswith(f"; nearest chains 22 s beside the other stages; total {times.total:.1f} s)")
    assert StageTimes({"load": 1.0}, total=2.0).summary() == "stage times: load 1.0 s (other 1.0 s; total 2.0 s)"


def test_a_failing_stage_is_still_recorded_and_the_recording_closed():
    with pytest.raises(RuntimeError):
        with recording() as times:
            with stage("load"):
                raise RuntimeError("boom")
    assert "load" in times.seconds and times.total >= times.seconds["load"]
    with stage("after"):  # no recording is open any more
        pass
    assert "after" not in times.seconds

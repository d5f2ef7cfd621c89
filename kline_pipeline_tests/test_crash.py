"""Why a run worker died: SIGKILL is blamed on memory only when the kernel counted an OOM kill."""

import signal

import pytest

from kline_pipeline import crash

PREFIX = "Run execution process for abc"


@pytest.fixture
def cgroup_v2(tmp_path):
    """A cgroup v2 layout for a process in /kline.slice, its memory.events holding `oom_kill`."""
    (tmp_path / "kline.slice").mkdir()
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/kline.slice\n")
    return tmp_path, proc


def write_oom_kills(root, count: int) -> None:
    (root / "kline.slice" / "memory.events").write_text(f"low 0\nhigh 0\nmax 4\noom 1\noom_kill {count}\n")


def test_the_oom_kill_count_is_read_from_cgroup_v2_and_v1(cgroup_v2, tmp_path):
    root, proc = cgroup_v2
    write_oom_kills(root, 3)
    assert crash.oom_kills(root=root, proc_cgroup=proc) == 3
    v1 = tmp_path / "v1"
    (v1 / "memory" / "docker" / "x").mkdir(parents=True)
    (v1 / "memory" / "docker" / "x" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    proc_v1 = tmp_path / "proc_v1"
    proc_v1.write_text("4:memory:/docker/x\n1:cpu:/docker/x\n")
    assert crash.oom_kills(root=v1, proc_cgroup=proc_v1) == 2
    assert crash.oom_kills(root=tmp_path / "none", proc_cgroup=tmp_path / "none") is None


def test_a_sigkill_without_an_oom_kill_is_said_to_come_from_outside():
    text = crash.explain_run_crash(PREFIX, -signal.SIGKILL, baseline=0, now=0)
    assert text.startswith(f"{PREFIX} was killed with signal 9 (SIGKILL) from outside the run")
    assert "not for memory" in text and "oom_kill count 0, unchanged" in text


def test_a_sigkill_after_an_oom_kill_is_blamed_on_memory():
    text = crash.explain_run_crash(PREFIX, -signal.SIGKILL, baseline=1, now=2)
    assert "by the kernel's out-of-memory killer (oom_kill count 1 -> 2)" in text and "more memory" in text


def test_without_a_count_it_says_it_cannot_tell(monkeypatch):
    monkeypatch.setattr(crash, "oom_kills", lambda **_: None)
    assert "this system does not report which" in crash.explain_run_crash(PREFIX, -signal.SIGKILL, baseline=0)


def test_other_exits_keep_dagsters_words():
    assert crash.explain_run_crash(PREFIX, -signal.SIGTERM) == f"{PREFIX} was terminated by signal 15 (SIGTERM)."
    assert crash.explain_run_crash(PREFIX, 3) == f"{PREFIX} unexpectedly exited with code 3."


def test_the_code_server_uses_it_once_the_definitions_are_loaded():
    import dagster._grpc.server as server

    import kline_pipeline.definitions  # noqa: F401 (installs the explanation)

    assert server.get_run_crash_explanation is crash.explain_run_crash

"""Jobs from cgroups: hierarchy choice, cgroup ids, the job tree."""

from __future__ import annotations

import json
import os

import pytest

from zxmem.sources import cgroups
from zxmem.sources.cgroups import (
    MODE_NONE,
    MODE_V1_MEMORY,
    MODE_V1_SYSTEMD,
    MODE_V2,
    RECORDING_META,
    ROOT_JOB_KOID,
    CgroupIds,
    ancestors,
    build_jobs,
    choose_hierarchy,
    mount_for_mode,
    synthetic_koid,
)
from zxmem.sources.procfs import MountInfo, parse_cgroup, parse_mountinfo

HYBRID = b"9:name=systemd:/user.slice\n4:memory:/box/web\n1:cpu:/\n0::/unified/x\n"
V2 = b"0::/system.slice/nginx.service\n"
SYSTEMD_ONLY = b"9:name=systemd:/user.slice/session-1.scope\n8:pids:/\n"
NO_CGROUPS = b""

MOUNTS = parse_mountinfo(
    b"31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
    b"35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    b"36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    b"40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
    b"41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
)


def test_mode_names():
    assert MODE_V2 == "cgroup2"
    assert MODE_V1_MEMORY == "cgroup1:memory"
    assert MODE_V1_SYSTEMD == "cgroup1:name=systemd"
    assert MODE_NONE == "none"


def test_choose_v1_memory_first_on_hybrid():
    # Memory is charged to the v1 memory controller's tree on hybrid machines.
    assert choose_hierarchy(parse_cgroup(HYBRID)) == (MODE_V1_MEMORY, "/box/web")


def test_choose_v2():
    assert choose_hierarchy(parse_cgroup(V2)) == (MODE_V2, "/system.slice/nginx.service")


def test_choose_systemd_name_tree_when_no_memory_controller_or_v2():
    assert choose_hierarchy(parse_cgroup(SYSTEMD_ONLY)) == (
        MODE_V1_SYSTEMD,
        "/user.slice/session-1.scope",
    )


def test_choose_none():
    assert choose_hierarchy(parse_cgroup(NO_CGROUPS)) is None
    # Only unrelated v1 controllers: no job tree either.
    assert choose_hierarchy(parse_cgroup(b"8:pids:/a\n1:cpu:/b\n")) is None


def test_choose_v2_over_systemd():
    data = b"9:name=systemd:/a\n0::/b\n"
    assert choose_hierarchy(parse_cgroup(data)) == (MODE_V2, "/b")


def test_mount_for_mode():
    assert mount_for_mode(MOUNTS, MODE_V1_MEMORY).mount_point == "/sys/fs/cgroup/memory"
    assert mount_for_mode(MOUNTS, MODE_V2).mount_point == "/sys/fs/cgroup/unified"
    assert mount_for_mode(MOUNTS, MODE_V1_SYSTEMD).mount_point == "/sys/fs/cgroup/systemd"
    assert mount_for_mode(MOUNTS[:1], MODE_V2) is None
    assert mount_for_mode((), MODE_V1_MEMORY) is None


def test_synthetic_koid_is_stable_and_above_inodes():
    k = synthetic_koid("/a/b")
    assert k == synthetic_koid("/a/b")
    assert k != synthetic_koid("/a/c")
    assert k >> 32 == 1


def test_ancestors():
    assert ancestors("/") == ["/"]
    assert ancestors("") == ["/"]
    assert ancestors("/a/b") == ["/", "/a", "/a/b"]


# --- CgroupIds ------------------------------------------------------------


def _mount(point: str, root: str = "/") -> MountInfo:
    return MountInfo(mount_point=point, fs_type="cgroup", root=root, super_options="rw,memory")


def test_ids_from_live_directories(tmp_path):
    (tmp_path / "cg" / "a" / "b").mkdir(parents=True)
    ids = CgroupIds(str(tmp_path), _mount("/cg"))
    assert ids.directory("/a/b") == "/cg/a/b"
    assert ids.directory("/") == "/cg"
    assert ids.koid("/a/b") == os.stat(tmp_path / "cg" / "a" / "b").st_ino
    assert ids.koid("/") == os.stat(tmp_path / "cg").st_ino


def test_ids_missing_directory_falls_back(tmp_path):
    ids = CgroupIds(str(tmp_path), _mount("/nowhere"))
    assert ids.koid("/gone") == synthetic_koid("/gone")
    assert ids.koid("/") == ROOT_JOB_KOID


def test_ids_without_mount(tmp_path):
    ids = CgroupIds(str(tmp_path), None)
    assert ids.directory("/a") is None
    assert ids.koid("/a") == synthetic_koid("/a")
    assert ids.read_file("/a", "memory.oom.group") is None


def test_ids_mount_root_below_hierarchy_root(tmp_path):
    # A cgroup namespace or bind mount: the mount shows /box of the hierarchy.
    ids = CgroupIds(str(tmp_path), _mount("/sys/fs/cgroup", root="/box"))
    assert ids.directory("/box/web") == "/sys/fs/cgroup/web"
    assert ids.directory("/box") == "/sys/fs/cgroup"


def test_ids_from_recording_not_from_copied_inodes(tmp_path):
    # Copied directories have new inode numbers: a recording keeps the ids.
    (tmp_path / "cg" / "a").mkdir(parents=True)
    (tmp_path / RECORDING_META).write_text(
        json.dumps({"cgroup_ids": {"/cg": 1, "/cg/a": 4242}})
    )
    ids = CgroupIds(str(tmp_path), _mount("/cg"))
    assert ids.koid("/a") == 4242
    assert ids.koid("/") == 1
    # Not in the recording: synthetic, never the copy's inode.
    assert ids.koid("/b") == synthetic_koid("/b")
    # Control files are not read from a recording.
    (tmp_path / "cg" / "a" / "memory.oom.group").write_text("1\n")
    assert ids.read_file("/a", "memory.oom.group") is None


@pytest.mark.parametrize("meta", ["not json", '{"other": 1}', '{"cgroup_ids": [1]}'])
def test_ids_bad_recording_is_ignored(tmp_path, meta):
    (tmp_path / "cg" / "a").mkdir(parents=True)
    (tmp_path / RECORDING_META).write_text(meta)
    ids = CgroupIds(str(tmp_path), _mount("/cg"))
    assert ids.koid("/a") == os.stat(tmp_path / "cg" / "a").st_ino


def test_ids_read_file_live(tmp_path):
    (tmp_path / "cg" / "a").mkdir(parents=True)
    (tmp_path / "cg" / "a" / "memory.oom.group").write_text("1\n")
    ids = CgroupIds(str(tmp_path), _mount("/cg"))
    assert ids.read_file("/a", "memory.oom.group") == b"1\n"
    assert ids.read_file("/a", "missing") is None


# --- build_jobs -----------------------------------------------------------

KOIDS = {"/": 1, "/box": 50, "/box/web": 70, "/box/db": 60, "/sys": 40, "/sys/x": 45}


def test_build_jobs_tree():
    jobs, koids = build_jobs(["/box/web", "/box/db", "/sys/x", "/box/web"], KOIDS.__getitem__)
    assert koids == KOIDS
    by_koid = {j.koid: j for j in jobs}
    # Parents before children; siblings in koid order.
    assert [j.koid for j in jobs] == [1, 40, 50, 45, 60, 70]
    assert by_koid[1].name == "root" and by_koid[1].parent_koid == 0 and by_koid[1].path == "/"
    assert by_koid[70].name == "web" and by_koid[70].parent_koid == 50
    assert by_koid[50].path == "/box" and by_koid[50].parent_koid == 1
    assert by_koid[45].parent_koid == 40


def test_build_jobs_only_root():
    jobs, koids = build_jobs([], KOIDS.__getitem__)
    assert [(j.koid, j.name, j.parent_koid) for j in jobs] == [(1, "root", 0)]
    assert koids == {"/": 1}


def test_build_jobs_state():
    jobs, _ = build_jobs(
        ["/box/web"], KOIDS.__getitem__, lambda p: "killoom" if p == "/box" else ""
    )
    assert {j.koid: j.state for j in jobs} == {1: "", 50: "killoom", 70: ""}


def test_module_constants():
    assert cgroups.USER_ROOT_JOB_KOID == 0xFFFFFFFF
    assert ROOT_JOB_KOID == 1

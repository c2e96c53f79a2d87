"""Confine a process before it runs a student's code.

:func:`enter_jail` is called in the process that is about to run student code
(a worker forked from the zygote, or the Jupyter kernel of plain ``nbgrader
autograde``), while it is still the grader's user. As root it then has:

- a memory limit for its whole process tree (:class:`ProcessGroup`, a cgroup:
  v2 where the machine delegates the memory controller, else v1; without
  either, only the per-process address-space limit below applies);
- no network: a network namespace of its own with no interface up;
- a filesystem of its own: a fresh root holding only the system's libraries,
  the Python installation and its packages, and the submission's working
  folder, a small tmpfs; the course (solutions, checks, gradebook, other
  submissions) and every other folder of the machine are not there;
- an unprivileged user id that owns nothing but that working folder.

As any user it gets its own session, resource limits (address space, CPU
time, file size, open files, processes, no core files), and a scrubbed
environment (:func:`environment`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18

#: What every jail sees of the machine, read-only: programs, libraries and configuration.
SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc")


@dataclass(frozen=True)
class Jail:
    """Where and how one run of student code is confined."""

    workdir: str
    root: str  # an empty folder the grader made: the jail's root is mounted there
    uid: int | None
    memory_bytes: int
    cpu_seconds: float
    relative_memory: bool = False  # the address-space limit comes on top of what is already mapped (a fork)
    cgroup: str = ""  # a ProcessGroup's path; empty: no cgroup
    workdir_bytes: int = 64 * 1024**2
    network: bool = False
    extra_paths: tuple[str, ...] = field(default=())  # more folders to show, read-write (a kernel's connection files)
    max_processes: int = 64


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def encode(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    _check(_libc().mount(encode(source), encode(target), encode(fstype), flags, encode(data)), f"mount {target}")


#: The course folder: never shown to a jail, nor any folder that contains it.
COURSE_ROOT = str(Path(__file__).resolve().parent.parent)


def python_paths() -> list[str]:
    """Every folder the interpreter loads code or data from, as given and resolved.

    The course folder itself is left out (``sys.path`` starts with it when
    the grader runs from there); a virtual environment inside it is kept.
    """
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable),
             *sysconfig.get_paths().values()}
    paths |= {p for p in sys.path if p and os.path.isdir(p)}
    paths |= {os.path.realpath(p) for p in paths}
    course = os.path.realpath(COURSE_ROOT)

    def shows_course(path: str) -> bool:
        real = os.path.realpath(path)
        return any(course == p or course.startswith(p.rstrip("/") + "/") for p in (path, real)) or \
            any(p.startswith(course + "/autograder") for p in (path, real))

    return sorted(p for p in paths if os.path.isdir(p) and not shows_course(p))


def _bind(source: str, root: str, writable: bool = False) -> None:
    target = root + source
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(source, target, None, MS_BIND | MS_REC)
    if not writable:
        with contextlib.suppress(OSError):  # a read-only remount is a second line of defence only
            _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)


def _build_root(jail: Jail) -> str:
    """A new root (tmpfs) with the system, Python, ``/proc``, a few devices and the working folder."""
    root = jail.root
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    # Fresh temp folders first: an interpreter that lives under /tmp is bound inside them, not hidden by them.
    for tmp in ("/tmp", "/dev/shm"):
        os.makedirs(root + tmp, exist_ok=True)
        _mount("tmpfs", root + tmp, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=16m")
    for path in SYSTEM_PATHS:
        if os.path.isdir(path) and not os.path.islink(path):
            _bind(path, root)
        elif os.path.islink(path):
            os.symlink(os.readlink(path), root + path)
    for path in python_paths():
        if not os.path.exists(root + path):
            _bind(path, root)
    # Links on the way to the interpreter (a .venv that is a symbolic link) must resolve inside.
    for path in {sys.prefix, sys.executable}:
        if os.path.islink(path) and not os.path.lexists(root + path):
            os.makedirs(os.path.dirname(root + path), exist_ok=True)
            os.symlink(os.readlink(path), root + path)
    for device in ("null", "zero", "random", "urandom"):
        _bind(f"/dev/{device}", root, writable=True)
    os.makedirs(root + "/proc", exist_ok=True)
    _mount("/proc", root + "/proc", None, MS_BIND | MS_REC)
    os.makedirs(root + jail.workdir, exist_ok=True)
    _mount("tmpfs", root + jail.workdir, "tmpfs", MS_NOSUID | MS_NODEV,
           f"mode=0700,size={jail.workdir_bytes},uid={jail.uid},gid={jail.uid}")
    for path in jail.extra_paths:
        _bind(path, root, writable=True)
    return root


def enter_jail(jail: Jail) -> None:
    """Confine this process as ``jail`` says (irreversible; call it in the process to confine)."""
    with contextlib.suppress(PermissionError):
        os.setsid()
    root_user = os.geteuid() == 0 and jail.uid is not None
    if root_user:
        if jail.cgroup:
            ProcessGroup.join(jail.cgroup)
        _check(_libc().unshare(CLONE_NEWNS | (0 if jail.network else CLONE_NEWNET)), "unshare")
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        files = regular_files(jail.workdir)  # the working folder's tmpfs is mounted over them
        root = _build_root(jail)
        write_files(root + jail.workdir, files, jail.uid)
        os.chroot(root)
        os.chdir("/")
        os.setgroups([])
        os.setgid(jail.uid)
        os.setuid(jail.uid)
    limit = jail.memory_bytes + (_mapped_bytes() if jail.relative_memory else 0)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cpu = int(jail.cpu_seconds) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (jail.workdir_bytes, jail.workdir_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    if root_user:
        resource.setrlimit(resource.RLIMIT_NPROC, (jail.max_processes, jail.max_processes))
    os.chdir(jail.workdir)
    os.umask(0o077)


def _mapped_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def regular_files(folder: str, limit: int = 32 * 1024**2, skip_suffix: str = "") -> dict[str, bytes]:
    """The regular files directly in ``folder``, by name: no link followed, at most ``limit`` bytes in all."""
    files: dict[str, bytes] = {}
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if (skip_suffix and entry.name.endswith(skip_suffix)) or not entry.is_file(follow_symlinks=False):
                continue
            size = entry.stat(follow_symlinks=False).st_size
            if total + size > limit:
                continue
            descriptor = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(descriptor, "rb") as handle:
                files[entry.name] = handle.read(size)
            total += size
    return files


def write_files(folder: str, files: dict[str, bytes], uid: int | None = None) -> None:
    for name, data in files.items():
        path = os.path.join(folder, name)
        with open(path, "wb") as handle:
            handle.write(data)
        if uid is not None:
            os.chown(path, uid, uid)


def environment(workdir: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment student code sees: no secret of the grader's, home and temp in its folder."""
    keep = {key: value for key, value in os.environ.items() if key.startswith(("OPENBLAS_CORETYPE", "LANG", "LC_"))}
    return {
        "PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": workdir,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        **keep,
        **(extra or {}),
    }


# ---------------------------------------------------------------------------
# Memory for a whole process tree


class ProcessGroup:
    """A cgroup holding one run's processes: one memory limit for all of them, one kill for all.

    Created by the grader (root) before the run, joined by the confined
    process itself, removed after the run. :meth:`create` returns ``None``
    where the machine offers no memory cgroup the grader may use.
    """

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    @property
    def handle(self) -> str:
        return os.pathsep.join(str(p) for p in self.paths)

    @staticmethod
    def _own(controller: str) -> Path | None:
        """This process's cgroup folder for ``controller`` (v1), or its unified folder (v2, ``""``)."""
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controller == "" and controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
                return Path("/sys/fs/cgroup") / path.lstrip("/")
            if controller and controller in controllers.split(","):
                base = Path("/sys/fs/cgroup") / controller
                return base / path.lstrip("/") if base.is_dir() else None
        return None

    @classmethod
    def create(cls, name: str, memory_bytes: int, max_processes: int) -> ProcessGroup | None:
        if os.geteuid() != 0:
            return None
        unified = cls._own("")
        if unified is not None and "memory" in (unified / "cgroup.controllers").read_text():
            with contextlib.suppress(OSError):
                path = unified / name
                path.mkdir()
                (path / "memory.max").write_text(str(memory_bytes))
                (path / "memory.swap.max").write_text("0") if (path / "memory.swap.max").exists() else None
                (path / "pids.max").write_text(str(max_processes)) if (path / "pids.max").exists() else None
                return cls([path])
        memory = cls._own("memory")
        if memory is None:
            return None
        paths: list[Path] = []
        try:
            path = memory / name
            path.mkdir()
            paths.append(path)
            (path / "memory.limit_in_bytes").write_text(str(memory_bytes))
            swap = path / "memory.memsw.limit_in_bytes"
            if swap.exists():
                with contextlib.suppress(OSError):
                    swap.write_text(str(memory_bytes))
            pids = cls._own("pids")
            if pids is not None:
                (pids / name).mkdir()
                paths.append(pids / name)
                (pids / name / "pids.max").write_text(str(max_processes))
        except OSError:
            cls(paths).remove()
            return None
        return cls(paths)

    @staticmethod
    def join(handle: str) -> None:
        for path in handle.split(os.pathsep):
            (Path(path) / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.paths:
            with contextlib.suppress(OSError, ValueError):
                found |= {int(line) for line in (path / "cgroup.procs").read_text().split()}
        return found

    def kill_all(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def out_of_memory(self) -> bool:
        """Whether the kernel stopped a process of this group for lack of memory."""
        for path in self.paths:
            with contextlib.suppress(OSError, ValueError):
                if (path / "memory.events").exists():
                    events = dict(line.split() for line in (path / "memory.events").read_text().splitlines())
                    if int(events.get("oom_kill", 0)) > 0:
                        return True
                if (path / "memory.failcnt").exists() and int((path / "memory.failcnt").read_text()) > 0:
                    return True
        return False

    def remove(self) -> None:
        self.kill_all()
        for path in self.paths:
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)

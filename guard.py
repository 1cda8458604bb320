"""
Safe by construction: the few mechanisms every script goes through, so that no command removes or
overwrites what it did not write, writes outside its output, leaves a half-written file, or takes a bad flag.

  outputs  claim(path) once per output, before any work: a lock (two runs never write one place), the rules
           (an existing output only with --force, and then only what nerm wrote; never an input of the same
           command or a folder holding one), and the debris of killed runs removed. write(path, fill) and
           Folder(path) then write through a temp file or folder beside the target and one atomic rename,
           never through a link; every name written is recorded in the folder's .nerm-manifest, which is how
           --force knows what nerm wrote.
  names    name(text): a plain file name from a prompt or a label; plain(id): an id a data file gives, refused
           unless it is one; inside(folder, listed): a path a data file lists, kept inside its folder.
  flags    argparse types: Int, Float, Text, Path, Choice-free device; every flag declares its range once.
  errors   UserError (DataError, OutputError, checkpoint.CheckpointError): report_errors() makes any of
           them, and any OSError of the disk, one line on stderr and exit status 1.

    python -m pytest -q tests/test_guard.py
"""
import argparse
import atexit
import fcntl
import math
import os
import re
import secrets
import shutil
import stat
import sys

MANIFEST = ".nerm-manifest"   # one name per line: what nerm wrote in this folder
_DEBRIS = re.compile(r"^\.nerm-(tmp|old)-(\d+)-[0-9a-f]+-(.+)$")   # kind, pid, target name
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UserError(Exception):
    """A problem of the user's flags, data or machine: the message names it in one line."""


class DataError(UserError):
    """A user-facing problem with the data: the message says what is wrong and what was expected."""


class OutputError(UserError):
    """An output that may not, or cannot, be written: the message names the path."""


def report_errors():
    """Any UserError or OSError that reaches the top of a script: one line on stderr, exit status 1 (^C: one
    line too). Every other exception is a bug, and keeps its traceback."""
    def hook(kind, e, tb):
        if issubclass(kind, UserError):
            print(f"error: {e}", file=sys.stderr)
        elif issubclass(kind, OSError):
            print(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        elif issubclass(kind, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
        else:
            sys.__excepthook__(kind, e, tb)
    sys.excepthook = hook


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------

_claims = {}       # absolute path -> (force, lock fd, lock path) of every output this process claimed
_written = set()   # what this process wrote: it may replace its own files (a checkpoint every 500 steps)


def _temp(path, kind):
    """A name beside path that only this process uses; the next run knows it by its pid (_clean)."""
    return os.path.join(os.path.dirname(path),
                        f".nerm-{kind}-{os.getpid()}-{secrets.token_hex(4)}-{os.path.basename(path)[-80:]}")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:    # another user's process
        return True
    return True


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)   # rmtree never follows a link out of the folder
    elif os.path.lexists(path):
        os.unlink(path)


def _clean(folder):
    """Remove what killed runs left in folder: their temp files and folders; a replaced output whose new copy
    never arrived (killed between the two renames) is put back. (Their locks were released by the kernel; a
    lock file left behind is taken over by the next claim of that output.)"""
    for entry in os.listdir(folder):
        m = _DEBRIS.match(entry)
        if not m or _alive(int(m.group(2))):
            continue
        kind, path, target = m.group(1), os.path.join(folder, entry), os.path.join(folder, m.group(3))
        if kind == "old" and not os.path.lexists(target):
            os.rename(path, target)
        else:
            _remove(path)


def manifest(folder):
    """The names nerm recorded in folder (relative paths inside it)."""
    try:
        fd = os.open(os.path.join(folder, MANIFEST), os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return set()
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        return {line.rstrip("\n") for line in f if line.strip()}


def _record(folder, names):
    """Add names to folder's manifest (appends of a few bytes: two writers never lose a line)."""
    fd = os.open(os.path.join(folder, MANIFEST), os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(n + "\n" for n in names))


def recorded(path):
    """Whether nerm wrote what is at path: a regular file (not a link) its folder's manifest names, or a folder
    whose own manifest names every file in it and that holds no link."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISREG(mode):
        return os.path.basename(path) in manifest(os.path.dirname(path))
    if not stat.S_ISDIR(mode):
        return False
    listed = manifest(path)
    if not listed:
        return False
    for root, dirs, files in os.walk(path):            # os.walk does not follow links
        for n in dirs + files:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, path)
            if os.path.islink(p) or (n in files and rel != MANIFEST and rel not in listed):
                return False
    return True


def _check(path, force, remedy="pass --force to replace it, or choose another path"):
    """The replacement rule: an existing path only with force, and only what nerm wrote (or this run)."""
    if not os.path.lexists(path) or path in _written:
        return
    if not force:
        raise OutputError(f"{path} already exists: {remedy}")
    if not recorded(path):
        raise OutputError(f"{path} was not written by nerm (it is not in {MANIFEST} beside it, or holds other "
                          f"files): --force only replaces what nerm wrote. Move it away yourself, or choose another path")


def claim(path, force=False, inputs=(), into=False, remedy="pass --force to replace it, or choose another path",
          resumed=False, wait=False):
    """Make path an output of this run, before any work; returns its absolute path. Takes a lock on it (a
    second run that claims it fails at once), removes the debris of killed runs beside it, and checks the rules:
    an existing path only with force and only if nerm wrote it; never one of inputs (files or folders this
    command reads) nor a folder holding one. remedy: what the error for an existing path tells the user to do.
    into: path is a folder that files are written into (sample.py's --out): it may exist (it is made at the
    first write), and each file in it is checked by check() and write(). resumed: the caller has loaded path
    as its own kind of file to continue it (--resume), which shows that nerm wrote it. wait: a claim held by
    another run is waited for instead of refused (data.stored: two runs on one dataset share its store)."""
    path = os.path.abspath(path)
    if path in _claims:
        return path
    real = os.path.realpath(path)
    for i in inputs:
        if i is not None and (os.path.realpath(i) + os.sep).startswith(real + os.sep):
            raise OutputError(f"{path} would replace {i}, an input of this command: choose another output")
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, lock = _lock(path, wait)
    except OSError as e:
        raise OutputError(f"cannot write in {folder}: {e.strerror or e}") from None
    try:
        _clean(folder)
        if into and os.path.lexists(path) and not os.path.isdir(path):
            raise OutputError(f"{path} is not a folder")
        if into and os.path.isdir(path):
            _clean(path)
        if not (into or resumed):
            _check(path, force, remedy)
    except BaseException as e:     # refused: the lock goes with this claim
        os.unlink(lock)
        os.close(fd)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write in {folder}: {e.strerror or e}") from None
        raise
    _claims[path] = (force, fd, lock)
    if resumed:
        _written.add(path)
    return path


def _lock(path, wait=False):
    """An exclusive flock on .nerm-lock-<name> beside path, held until release(path) or until this process ends
    (the kernel releases it even after a kill; the file itself is removed at a normal exit, and taken over by
    the next run). wait: block until another run's lock is free, rather than refuse."""
    lock = os.path.join(os.path.dirname(path), f".nerm-lock-{os.path.basename(path)[-80:]}")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"another run is writing {path} now: wait for it, or choose another path") from None
        try:   # the file may have been unlinked by the run that held it: then lock the new one
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd, lock
        except FileNotFoundError:
            pass
        os.close(fd)


@atexit.register
def release(path=None):
    """End one claim (path), or every claim of this process as its exit does (its locks go); reset() also forgets
    what it wrote: the next claim is then judged as a new run's (tests use it between runs in one process)."""
    for p in [os.path.abspath(path)] if path else list(_claims):
        _, fd, lock = _claims.pop(p)
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)


def reset():
    release()
    _written.clear()


def _rule(path):
    """force of the claim that covers path (its own, or its folder's with into=True)."""
    if path in _claims:
        return _claims[path][0]
    if os.path.dirname(path) in _claims:
        return _claims[os.path.dirname(path)][0]
    raise RuntimeError(f"{path} is written without guard.claim(): every output is claimed first")


def check(path, force=None):
    """Raise OutputError now if write(path) would refuse it later (for every target of a run before its work)."""
    path = os.path.abspath(path)
    _check(path, _rule(path) if force is None else force)


def write(path, fill):
    """Write one file: fill(tmp) writes a temp file beside path (created here, so never through a link), which
    is flushed to disk and renamed onto path; on any failure (a full disk, ^C) the temp file is removed and
    path is as it was. A failure of the disk is one OutputError naming path."""
    path = os.path.abspath(path)
    force, folder = _rule(path), os.path.dirname(path)
    tmp = _temp(path, "tmp")
    try:
        os.makedirs(folder, exist_ok=True)   # a folder claimed with into=True is made at its first file
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666))
        fill(tmp)
        fd = os.open(tmp, os.O_RDONLY | _NOFOLLOW)
        os.fsync(fd)
        os.close(fd)
        _check(path, force)                  # still ours to replace, whatever appeared meanwhile
        if os.path.basename(path) not in manifest(folder):
            _record(folder, [os.path.basename(path)])
        os.replace(tmp, path)                # a link at path is replaced, never followed
    except BaseException as e:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    _written.add(path)
    return path


def write_text(path, text):
    """write() of a UTF-8 text file (a JSON report)."""
    def fill(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return write(path, fill)


class Folder:
    """A folder written whole (a dataset): files go into .tmp, a temp folder beside path; commit() records
    every file in the folder's own manifest and renames it onto path, the old copy (with --force) moved aside
    first and removed only once the new one is in place. Leaving the with block without commit() (an error,
    ^C) removes .tmp."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.force = _rule(self.path)
        self.tmp = _temp(self.path, "tmp")
        try:
            os.mkdir(self.tmp)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None

    def commit(self):
        try:
            files = [os.path.relpath(os.path.join(r, n), self.tmp) for r, _, fs in os.walk(self.tmp) for n in fs]
            _record(self.tmp, sorted(files))
            _check(self.path, self.force)
            old = None
            if os.path.lexists(self.path):
                old = _temp(self.path, "old")
                os.rename(self.path, old)
            os.rename(self.tmp, self.path)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        _written.add(self.path)
        if old:
            _remove(old)

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if os.path.lexists(self.tmp):
            _remove(self.tmp)


# ----------------------------------------------------------------------------------------------
# Names from data
# ----------------------------------------------------------------------------------------------


def name(text, limit=40, empty="unnamed"):
    """A plain file name from free text (a prompt, an action label): lowercase runs of a-z and 0-9 joined by
    '_', at most limit characters; never a separator, '.', '..' or empty."""
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")[:limit] or empty


def plain(sid, where):
    """sid, an id a data file gives (a sequence name), when it is a plain file name; DataError naming where
    (file:line) otherwise: no separator, no '.' or '..', no surrounding spaces, no control characters."""
    if (not sid or sid in (".", "..") or sid != sid.strip() or len(sid) > 200
            or any(c in sid for c in "/\\") or any(ord(c) < 32 for c in sid)):
        raise DataError(f"{where}: {sid!r} is not a plain file name (no folders, '..', spaces around it "
                        "or control characters)")
    return sid


def inside(folder, listed, where):
    """The path a data file lists (relative, '/'-separated), joined to the folder it is relative to; DataError
    naming where (file:line) when it is absolute or climbs out with '..'."""
    parts = [p for p in listed.replace("\\", "/").split("/") if p not in ("", ".")]
    if (not parts or listed.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", listed) or ".." in parts
            or "\0" in listed):
        raise DataError(f"{where}: {listed!r} is not a path inside {folder} (absolute, empty, or with '..')")
    return os.path.join(folder, *parts)


# ----------------------------------------------------------------------------------------------
# Flags: argparse types, so every flag states its range where it is declared
# ----------------------------------------------------------------------------------------------


class Int:
    """An integer in [lo, hi]."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def __call__(self, s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None
        if not self.lo <= v <= self.hi:
            raise argparse.ArgumentTypeError(f"expected {self.lo} to {self.hi:,}, got {s}")
        return v


class Float:
    """A finite number in [lo, hi]; open=True excludes lo (a rate or a scale that must be positive)."""

    def __init__(self, lo, hi, open=False):
        self.lo, self.hi, self.open = lo, hi, open

    def __call__(self, s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
        if not (math.isfinite(v) and (self.lo < v if self.open else self.lo <= v) and v <= self.hi):
            raise argparse.ArgumentTypeError(f"expected {self.lo:g} {'<' if self.open else '<='} x <= {self.hi:g}, got {s}")
        return v


class Text:
    """A string of 1 to limit characters with no control character (a prompt, a label)."""

    def __init__(self, limit=1000):
        self.limit = limit

    def __call__(self, s):
        if not s.strip() or len(s) > self.limit or any(ord(c) < 32 for c in s):
            raise argparse.ArgumentTypeError(f"expected 1 to {self.limit} printable characters, got {s[:60]!r}")
        return s


class Path:
    """A path: kind 'file' or 'folder' must exist as one; 'any' may not exist yet (an output, checked by claim)."""

    def __init__(self, kind):
        self.kind = kind

    def __call__(self, s):
        if not s or "\0" in s or len(s) > 4096:
            raise argparse.ArgumentTypeError(f"not a usable path: {s[:60]!r}")
        if self.kind == "file" and not os.path.isfile(s):
            raise argparse.ArgumentTypeError(f"{s} is not a file" if os.path.exists(s) else f"{s} not found")
        if self.kind == "folder" and not os.path.isdir(s):
            raise argparse.ArgumentTypeError(f"{s} is not a folder" if os.path.exists(s) else f"{s} not found")
        return s


def device(s):
    """cpu, cuda or cuda:N (a GPU this torch sees), mps."""
    import torch   # the scripts have it loaded already; guard itself needs no torch
    if s == "cpu" or (s == "mps" and torch.backends.mps.is_available()):
        return s
    m = re.fullmatch(r"cuda(?::(\d+))?", s)
    if m and torch.cuda.is_available() and int(m.group(1) or 0) < torch.cuda.device_count():
        return s
    raise argparse.ArgumentTypeError(f"{s!r}: this machine offers cpu" + (", cuda" if torch.cuda.is_available() else "")
                                     + (", mps" if torch.backends.mps.is_available() else ""))


TYPES = (Int, Float, Text, Path)   # tests: every flag of every script has one of these, a choice list, or device

"""The sources of the offline retrieval data set: nine Debian icon-theme packages, read as archives.

Each theme is pinned by package, version and sha256 of its ``.deb``, fetched once with ``apt-get download`` (never
installed) into ``<data_dir>/downloads/`` and read with the standard library: a ``.deb`` is an ``ar`` archive whose
``data.tar.*`` member holds the files. :func:`theme_icons` lists a theme's icons by freedesktop icon name and picks
one drawing of each (:func:`pick`): a PNG of at least the target size (the smallest such), else an SVG (the
scalable one, else the largest), else the largest PNG. Symbolic links are followed (a theme's aliases, e.g.
``gtk-copy`` -> ``edit-copy``, make the same drawing an instance of both names, as in the themes), monochrome
``-symbolic`` icons are left out.

Example:
>>> pick([(48, ".png", "a"), (None, ".svg", "b"), (96, ".png", "c")], target=64)
(96, '.png', 'c')
>>> pick([(48, ".png", "a"), (None, ".svg", "b")], target=64)
(None, '.svg', 'b')
"""

from __future__ import annotations

import dataclasses
import io
import lzma
import os
import pathlib
import posixpath
import re
import shutil
import tarfile

from identity_tf.datasets import cache
from identity_tf.datasets.cache import DataError


@dataclasses.dataclass(frozen=True)
class Theme:
    """One icon theme: the Debian package that ships it and the theme folder inside ``usr/share/icons/``.

    Attributes:
        package, version, sha256: The pinned ``.deb``.
        folder: The theme's folder name under ``usr/share/icons/`` (dark variants beside it are not used).
        licence: The licence of the theme's files (``Files: *`` of its Debian copyright file, which the build
            copies into the data set).
    """

    package: str
    version: str
    sha256: str
    folder: str
    licence: str

    @property
    def deb_name(self) -> str:
        """The file name ``apt-get download`` writes (``:`` of an epoch escaped as ``%3a``)."""
        return f"{self.package}_{self.version.replace(':', '%3a')}_all.deb"


#: The nine themes of DESIGN.md section 7 (Debian 12 "bookworm").
THEMES = (
    Theme(
        "adwaita-icon-theme",
        "43-1",
        "4b67610565d16b604d3efd9908e8e4b5d71873c5d0f9347433df509020f22af7",
        "Adwaita",
        "CC-BY-SA-3.0 or LGPL-3",
    ),
    Theme(
        "breeze-icon-theme",
        "4:5.103.0-1",
        "268e05fd9626b659f473ade05153bd5ec3b8bf704fcd07d27d91d2ce5db1bbfd",
        "breeze",
        "LGPL-3+",
    ),
    Theme(
        "elementary-xfce-icon-theme",
        "0.17-1",
        "012bd2eda0e19b162b9cdc167e904a4a4254f7c2e6409862d0f29a56d3630b75",
        "elementary-xfce",
        "GPL-2+",
    ),
    Theme(
        "gnome-icon-theme",
        "3.12.0-5",
        "243520edcff2c309065b7e12ae08f666580e6098ecafa0c0f7d28c75aedcfdc3",
        "gnome",
        "GPL-2+",
    ),
    Theme(
        "gnome-icon-theme-gartoon",
        "0.5-5",
        "266fa7a6bf94396c7dbff39ed3f04fa2b7c99837172fdebb781b491b4d218bff",
        "gartoon",
        "GPL-2+",
    ),
    Theme(
        "lxde-icon-theme",
        "0.5.1-2.1",
        "1b47e4879bf8b456c4d801d9d6a2035550bc50184dea05148e8b6e30c61b5ccd",
        "nuoveXT2",
        "LGPL-3+",
    ),
    Theme(
        "mate-icon-theme",
        "1.26.0-1",
        "356945b21bf2449ab4d3c0cead5abbc84fab247b140c6d0252263470df49dc54",
        "mate",
        "CC-BY-SA / LGPL-3+ (see its copyright file)",
    ),
    Theme(
        "oxygen-icon-theme",
        "5:5.103.0-1",
        "3e49023e148906e41457a98a19a09858ddd761ef4f212fa356232924b3cebcce",
        "oxygen",
        "LGPL-3+",
    ),
    Theme(
        "tango-icon-theme",
        "0.8.90-11",
        "dff317aca52fde744b884a02dd9fc2702a0cc6aaecc22271b5abf6906cd90b94",
        "Tango",
        "public domain",
    ),
)

_SIZE = re.compile(r"^(\d+)(?:x\d+)?$")
_EXTENSIONS = (".png", ".svg")


def fetch_deb(theme: Theme, data_dir=None, verbose: bool = True) -> pathlib.Path:
    """The theme's ``.deb`` in ``<data_dir>/downloads/``, fetched with ``apt-get download`` if missing.

    A cached file with the pinned sha256 is reused (one with another digest is deleted and fetched again).
    Nothing is installed.

    Raises:
        DataError: ``apt-get`` is missing or fails (the message says where to place the file instead), or the
            checksum differs.
    """
    folder = pathlib.Path(cache.data_dir(data_dir)) / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / theme.deb_name
    if target.exists() and cache._cached([target], theme.sha256):
        return target
    what = f"Debian package {theme.package}={theme.version}"
    apt = shutil.which("apt-get")
    if apt is None:
        raise DataError(
            f"Cannot download {what}: `apt-get` was not found (it is used only as `apt-get download`; nothing is "
            f"installed). Place the file (sha256 {theme.sha256}) at {str(target)!r}, or point `data.source` at a "
            "CUB_200_2011 folder."
        )
    cache.report(f"Downloading {what} with `apt-get download` into {str(folder)!r}.", verbose)
    command = [apt, "download", "-q", f"{theme.package}={theme.version}"]
    return cache._download_one(folder, "apt", command, ".deb", what, theme.sha256, target.name)


def deb_members(path: str | os.PathLike) -> tuple[dict, dict]:
    """The files of a ``.deb``'s data archive: ``({path: bytes}, {path: symlink target})``, paths without ``./``.

    Raises:
        DataError: the file is not a ``.deb`` (an ``ar`` archive with a ``data.tar.xz`` / ``.gz`` / uncompressed
            ``data.tar`` member).
    """
    path = pathlib.Path(path)
    raw = path.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise DataError(f"{str(path)!r} is not a Debian package (no ar header). Received: {raw[:8]!r}")
    offset, data = 8, None
    while offset + 60 <= len(raw):
        header = raw[offset : offset + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        body = raw[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            data = (name, body)
            break
    if data is None:
        raise DataError(f"{str(path)!r} has no data.tar member (not a Debian binary package).")
    name, body = data
    if name.endswith(".xz"):
        body = lzma.decompress(body)
    elif name.endswith(".gz"):
        import gzip

        body = gzip.decompress(body)
    elif name != "data.tar":
        raise DataError(f"{str(path)!r}: unsupported data member {name!r} (expected data.tar, .xz or .gz).")
    files, links = {}, {}
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as archive:
        for member in archive:
            member_path = posixpath.normpath(member.name.lstrip("./") if member.name != "." else "")
            if member.isfile():
                files[member_path] = archive.extractfile(member).read()
            elif member.issym():
                links[member_path] = member.linkname
    return files, links


def _resolve(path: str, files: dict, links: dict, hops: int = 16) -> str | None:
    """The regular file a path leads to through symbolic links (also links of parent folders); None if dangling."""
    for _ in range(hops):
        if path in files:
            return path
        parts = path.split("/")
        for cut in range(len(parts), 0, -1):
            prefix = "/".join(parts[:cut])
            if prefix in links:
                target = links[prefix]
                base = posixpath.dirname(prefix)
                resolved = target.lstrip("/") if target.startswith("/") else posixpath.join(base, target)
                path = posixpath.normpath("/".join([resolved, *parts[cut:]]))
                break
        else:
            return None
    return None


def pick(candidates: list[tuple], target: int) -> tuple:
    """The drawing to use among ``(size or None, extension, path)``: PNG >= target > SVG > largest PNG."""
    pngs = [c for c in candidates if c[1] == ".png" and c[0] is not None]
    large = [c for c in pngs if c[0] >= target]
    if large:
        return min(large, key=lambda c: (c[0], c[2]))
    svgs = [c for c in candidates if c[1] == ".svg"]
    if svgs:
        return max(svgs, key=lambda c: (c[0] is None, c[0] or 0, c[2]))  # scalable first, then the largest
    if pngs:
        return max(pngs, key=lambda c: (c[0], c[2]))
    return min(candidates, key=lambda c: c[2])


def theme_icons(files: dict, links: dict, folder: str, target: int) -> dict[str, tuple[str, bytes]]:
    """``{icon name: (extension, file bytes)}`` of one theme folder (``usr/share/icons/<folder>/``)."""
    root = f"usr/share/icons/{folder}/"
    found: dict[str, list[tuple]] = {}
    for path in sorted(set(files) | set(links)):
        if not path.startswith(root):
            continue
        stem, extension = posixpath.splitext(posixpath.basename(path))
        if extension not in _EXTENSIONS or stem.endswith(("-symbolic", "-symbolic-rtl")):
            continue
        size = None
        for part in path[len(root) :].split("/")[:-1]:
            match = _SIZE.match(part)
            if match:
                size = int(match.group(1))
        found.setdefault(stem, []).append((size, extension, path))
    icons = {}
    for name, candidates in found.items():
        resolved = [(s, e, _resolve(p, files, links)) for s, e, p in candidates]
        resolved = [c for c in resolved if c[2] is not None]
        if resolved:
            size, extension, path = pick(resolved, target)
            icons[name] = (extension, files[path])
    return icons


def copyright_text(files: dict, package: str) -> str:
    """The package's Debian copyright file (``usr/share/doc/<package>/copyright``), or "" if absent."""
    data = files.get(f"usr/share/doc/{package}/copyright")
    return data.decode("utf-8", "replace") if data is not None else ""


__all__ = ["THEMES", "Theme", "copyright_text", "deb_members", "fetch_deb", "pick", "theme_icons"]

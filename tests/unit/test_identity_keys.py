"""The identity key rotates: boxes sealed under the retired key still open, new ones are sealed under the new."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from shared.errors import ConfigurationError
from shared.sealing import UnsealError, load_sealer
from shared.settings import Settings

# Fixed, not random: the parameters below carry them, and pytest's workers must collect the same test names.
OLD, NEW = (base64.b64encode(byte * 32).decode() for byte in (b"o", b"n"))
CASE = b"case-1"


def test_identity_sealed_before_a_rotation_still_opens_with_the_retired_key_kept(tmp_path: Path) -> None:
    """Found by review: the sealer held the current key alone, so after a rotation no victim's identity sealed
    before it could be read, although every box names the key it was sealed with for this very purpose."""
    before = load_sealer(Settings(data_dir=tmp_path, identity_key=OLD, identity_key_id="k1"))
    box = before.seal({"full_name": "Siti Aminah"}, context=CASE)

    after = load_sealer(
        Settings(data_dir=tmp_path, identity_key=NEW, identity_key_id="k2", identity_retired_keys=f"k1:{OLD}")
    )

    assert after.open(box, context=CASE) == {"full_name": "Siti Aminah"}
    assert after.seal({"full_name": "Dewi"}, context=CASE).key_id == "k2"


def test_without_the_retired_key_an_older_box_is_refused_naming_its_key(tmp_path: Path) -> None:
    box = load_sealer(Settings(data_dir=tmp_path, identity_key=OLD, identity_key_id="k1")).seal({}, context=CASE)

    with pytest.raises(UnsealError, match="unknown key 'k1'"):
        load_sealer(Settings(data_dir=tmp_path, identity_key=NEW, identity_key_id="k2")).open(box, context=CASE)


@pytest.mark.parametrize(
    ("retired", "message"),
    [
        (f"k2:{OLD}", "not the current one"),
        (OLD, "id:base64"),
        ("k1:not-base64!", "is not base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "must be 32 bytes"),
    ],
)
def test_a_malformed_retired_identity_key_is_refused(tmp_path: Path, retired: str, message: str) -> None:
    settings = Settings(data_dir=tmp_path, identity_key=NEW, identity_key_id="k2", identity_retired_keys=retired)

    with pytest.raises(ConfigurationError, match=message):
        load_sealer(settings)

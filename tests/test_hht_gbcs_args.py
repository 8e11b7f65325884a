"""`chub hht send-gbcs` refuses what it cannot do before it reaches a hub."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from chub.cli import main
from chub.hht_gbcs import command_id


def test_wait_and_reply_here_are_one_or_the_other(tmp_path: Path) -> None:
    cmd = tmp_path / "c.hex"
    cmd.write_text("DD00\n")
    r = CliRunner().invoke(main, ["hht", "--port", "socket://127.0.0.1:9", "send-gbcs", "--in", str(cmd),
                                  "--out", str(tmp_path / "o.hex"), "--wait", "1", "--gsme-reply-here"])
    assert r.exit_code == 2 and "choose one" in r.output, r.output


def test_a_frame_the_head_end_cannot_read_has_no_id() -> None:
    # sent on to the hub, which refuses it with its reason (and logs it)
    assert command_id(bytes.fromhex("DD00")) == {"id": "?"}
    assert command_id(b"") == {"id": "?"}

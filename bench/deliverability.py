"""Deliverability check: SpamAssassin's score and rule hits for the messages msgcenter sends.

It sends the demo's template (for its seed) and the tests' order-confirmation
template through the real email sender (``sending/email.py``: MIME, headers,
tracking, List-Unsubscribe, DKIM with a key made for the run) to an SMTP
catcher in this process, then runs Debian's SpamAssassin on each message with
local tests only (``spamassassin -L -t``: no DNS, no network, so no blocklist
and no DKIM key lookup) and reports its score and every rule it hit. Results
go to ``bench/results/deliverability-<YYYYMMDD-HHMM>.json``; see
``bench/README.md``.

    apt-get install spamassassin
    python bench/deliverability.py
    python bench/deliverability.py --max-score 1.5     # exit 1 when a message scores more
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(REPO))

from msgcenter.channels.email.config import AttachmentSettings, SmtpSettings  # noqa: E402
from msgcenter.channels.email.identity import installation_tag  # noqa: E402
from msgcenter.control.design.checks import seed_event  # noqa: E402
from msgcenter.deliveries import ClaimedMessage  # noqa: E402
from msgcenter.events.model import Channel, EmailFormat, Queue  # noqa: E402
from msgcenter.publications import (  # noqa: E402
    Publication,
    PublishedContent,
    compile_publication,
)
from msgcenter.render import load_ctx  # noqa: E402
from msgcenter.sending.attempts import AttemptKind  # noqa: E402
from msgcenter.sending.email import EmailSender  # noqa: E402

#: a rule line of SpamAssassin's report: " 0.1 MISSING_MID   Missing Message-Id: header"
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")
_SCORE = re.compile(r"score=(-?\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Case:
    """One message to score: a template, the event it is rendered for."""

    name: str
    template: str
    content: PublishedContent
    address: str
    ctx: str
    ctx_format: str


def cases() -> list[Case]:
    """The demo's template for its seed, and the tests' template with and without tracking."""
    demo = tomllib.loads((REPO / "src/msgcenter/demo/order_confirmation.toml").read_text("utf-8"))
    blocks = {block["name"]: block["content"] for block in demo["blocks"]}
    seed = demo["seed"]
    tests = tomllib.loads((REPO / "tests/fixtures/order_confirmation.toml").read_text("utf-8"))
    order = {
        "client": {"firstname": "Ann"},
        "order": {"id": "1001", "article": [{"sku": "A1", "qty": "1"}, {"sku": "B2", "qty": "2"}]},
    }
    test_content = {
        **tests["content"],
        "list_unsubscribe": "mailto:unsubscribe@example.com?subject={{ event.email|urlencode }}",
    }
    return [
        Case(
            "demo",
            demo["template"]["name"],
            PublishedContent.model_validate({**demo["template"]["content"], "blocks": blocks}),
            seed["address"],
            seed["ctx"],
            seed["ctx_format"],
        ),
        Case(
            "test-template",
            tests["template"],
            PublishedContent.model_validate(test_content),
            "ann@example.com",
            json.dumps(order),
            "json",
        ),
        Case(
            "test-template-tracked",
            tests["template"],
            PublishedContent.model_validate({**test_content, "tracking": True}),
            "bob@example.com",
            json.dumps(order),
            "json",
        ),
    ]


class _Catcher:
    """aiosmtpd handler keeping each message's bytes."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope.original_content)
        return "250 2.0.0 caught"


async def send_all(selected: list[Case], key_file: Path, port: int) -> list[bytes]:
    """Each case sent through the real email sender, as the catcher received it."""
    catcher = _Catcher()
    controller = Controller(catcher, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    smtp = SmtpSettings(
        host="127.0.0.1",
        port=port,
        helo_name="mail.example.com",
        dkim_selector="mc",
        dkim_domain="example.com",
        dkim_private_key_file=key_file,
    )
    sender = EmailSender(
        smtp,
        AttachmentSettings(),
        "deliverability bench secret",
        instance="exec",
        tracking_base_url="https://t.example.com",
        installation=installation_tag(),
    )
    try:
        for number, case in enumerate(selected, start=1):
            publication = Publication(
                number, case.template, "order_confirmation", Channel.EMAIL, None, Queue.RT, 1,
                datetime.now(UTC), case.content,
            )  # fmt: skip
            event = seed_event("order_confirmation", Channel.EMAIL, None, case.address)
            event.update(id=number, email_format=int(EmailFormat.UNKNOWN))
            ctx = load_ctx(case.ctx, case.ctx_format)
            rendered = compile_publication(publication).render(event, ctx)
            message = ClaimedMessage(
                delivery_log_id=number,
                publication_id=number,
                queue=Queue.RT,
                channel=Channel.EMAIL,
                address=case.address,
                attempts=0,
                valid_until=datetime.now(UTC) + timedelta(hours=1),
                event=event,
                ctx=case.ctx,
                ctx_format=case.ctx_format,
            )
            attempt = await sender.send(message, publication, rendered, ctx)
            if attempt.kind is not AttemptKind.SENT:
                raise RuntimeError(f"{case.name}: not sent: {attempt.reason}")
    finally:
        await sender.close()
        controller.stop()
    return catcher.messages


def spamassassin(message: bytes, binary: str) -> dict[str, Any]:
    """SpamAssassin's verdict on ``message`` with local tests only: score and rules hit."""
    done = subprocess.run(
        [binary, "-L", "-t"], input=message, capture_output=True, check=False, timeout=120
    )
    output = done.stdout.decode("utf-8", "replace")
    status = re.search(r"^X-Spam-Status: (.*(?:\r?\n[ \t].*)*)", output, re.MULTILINE)
    if status is None:
        raise RuntimeError(f"no X-Spam-Status in SpamAssassin's output: {done.stderr!r}")
    score = _SCORE.search(status[1])
    rules = []
    in_report = False
    for line in output.splitlines():
        if re.match(r"^\s*pts rule name", line):
            in_report = True
            continue
        if in_report:
            if line.startswith(" ----") or line.startswith("----"):
                continue
            found = _RULE.match(line)
            if found is not None:
                rules.append(
                    {"rule": found[2], "points": float(found[1]), "description": found[3].strip()}
                )
            elif line.strip() and not line.startswith(" " * 10):
                in_report = False
    return {"score": float(score[1]) if score else None, "rules": rules}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spamassassin", default="spamassassin", help="the spamassassin binary")
    parser.add_argument("--max-score", type=float, help="exit 1 when a message scores more")
    parser.add_argument("--port", type=int, default=2599, help="port of the in-process catcher")
    parser.add_argument("--keep", type=Path, help="also write each message (.eml) to this folder")
    args = parser.parse_args()
    binary = shutil.which(args.spamassassin)
    if binary is None:
        print("spamassassin not found: apt-get install spamassassin", file=sys.stderr)
        return 2
    selected = cases()
    with tempfile.TemporaryDirectory() as work:
        key_file = Path(work) / "dkim.pem"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        messages = asyncio.run(send_all(selected, key_file, args.port))
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    results = []
    for case, message in zip(selected, messages, strict=True):
        verdict = spamassassin(message, binary)
        results.append({"message": case.name, "template": case.template, **verdict})
        print(f"{case.name}: score {verdict['score']}")
        for rule in verdict["rules"]:
            print(f"  {rule['points']:5.1f} {rule['rule']:<28} {rule['description']}")
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            (args.keep / f"{case.name}.eml").write_bytes(message)
    started = datetime.now(UTC)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"deliverability-{started:%Y%m%d-%H%M}.json"
    path.write_text(
        json.dumps(
            {
                "at": started.isoformat(timespec="seconds"),
                "spamassassin": version.stdout.strip().splitlines()[:1],
                "mode": "local tests only (-L)",
                "messages": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {path.relative_to(REPO)}")
    worst = max((r["score"] or 0.0) for r in results)
    if args.max_score is not None and worst > args.max_score:
        print(f"a message scores {worst} > {args.max_score}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

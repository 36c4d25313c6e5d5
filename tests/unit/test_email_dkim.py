"""DKIM signing (RFC 6376), verified independently by dkimpy against the test public key."""

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from msgcenter.channels.email.config import SmtpSettings
from msgcenter.channels.email.dkim import (
    OVERSIGNED_HEADERS,
    DkimKeyring,
    DkimSigner,
    aligned_domains,
    alignment_problem,
)
from msgcenter.channels.email.mime import Attachment, build_message
from msgcenter.errors import ConfigurationError


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def dns(key):
    """dkimpy's documented ``dnsfunc`` hook: the TXT record of sel._domainkey.example.com."""
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def txt(name, timeout=5):
        return record if name == b"sel._domainkey.example.com." else None

    return txt


def message(**overrides):
    fields = {
        "sender": "Boutique Éclair <shop@example.com>",
        "recipient": "anne@example.org",
        "subject": "Votre commande n°1001 est confirmée " * 3,
        "message_id": "<dl-1001@example.com>",
        "text": "Bonjour,  \n\n\tmerci !\n\n\n",
        "html": "<p>Bonjour</p>",
        "list_unsubscribe": ["https://shop.example/u/1"],
        "list_unsubscribe_post": True,
    }
    return build_message(**{**fields, **overrides})


@pytest.mark.parametrize(
    "raw",
    [
        message(),
        message(html=None, text="no trailing line break"),
        message(attachments=[Attachment("a.pdf", "application/pdf", b"%PDF" * 900)]),
    ],
)
def test_signatures_verify(key, dns, raw):
    signed = DkimSigner("sel", "Example.COM", key).sign(raw)
    assert signed.endswith(raw)
    assert dkim.verify(signed, dnsfunc=dns)


def test_the_one_click_headers_are_signed_and_from_is_oversigned(key, dns):
    signed = DkimSigner("sel", "example.com", key).sign(message())
    signature = dkim.DKIM(signed)
    assert signature.verify(dnsfunc=dns)
    signed_names = signature.include_headers
    assert {b"list-unsubscribe", b"list-unsubscribe-post", b"subject", b"to"} <= set(signed_names)
    assert signed_names.count(b"from") == 2


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"Bonjour</p>", b"Bonsoir</p>"), (b"To: anne@example.org", b"To: eve@example.org")],
)
def test_a_changed_message_fails(key, dns, old, new):
    signed = DkimSigner("sel", "example.com", key).sign(message())
    assert not dkim.verify(signed.replace(old, new), dnsfunc=dns)


def test_a_relay_that_refolds_headers_does_not_break_it(key, dns):
    signed = DkimSigner("sel", "example.com", key).sign(message())
    assert dkim.verify(signed.replace(b"MIME-Version: 1.0", b"MIME-Version:   1.0 "), dnsfunc=dns)


def write_key(path, private_key):
    path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_from_settings(tmp_path, key, dns):
    assert DkimSigner.from_settings(SmtpSettings()) is None
    settings = SmtpSettings(
        dkim_selector="sel",
        dkim_domain="example.com",
        dkim_private_key_file=write_key(tmp_path / "k.pem", key),
    )
    assert dkim.verify(DkimSigner.from_settings(settings).sign(message()), dnsfunc=dns)


def test_unusable_keys_stop_the_start(tmp_path):
    def settings(path):
        return SmtpSettings(
            dkim_selector="s", dkim_domain="example.com", dkim_private_key_file=path
        )

    with pytest.raises(ConfigurationError, match="cannot load"):
        DkimSigner.from_settings(settings(tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigurationError, match="cannot load"):
        DkimSigner.from_settings(settings(tmp_path / "junk.pem"))
    ec_key = write_key(tmp_path / "ec.pem", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigurationError, match="RSA"):
        DkimSigner.from_settings(settings(ec_key))


def test_dkim_settings_come_together():
    with pytest.raises(ValueError, match="DKIM needs"):
        SmtpSettings(dkim_selector="sel")


def test_the_identity_headers_are_oversigned(key, dns):
    signed = DkimSigner("sel", "example.com", key).sign(message(feedback_id="t:-:rt:exec"))
    signature = dkim.DKIM(signed)
    assert signature.verify(dnsfunc=dns)
    names = signature.include_headers
    for name in (b"from", b"to", b"subject", b"date", b"message-id", b"content-type"):
        assert names.count(name) == 2, name
    for name in (b"list-unsubscribe", b"list-unsubscribe-post"):
        assert names.count(name) == 2, name
    # absent, still named: nobody can add one
    assert names.count(b"reply-to") == 1
    assert {b"auto-submitted", b"feedback-id", b"mime-version"} <= set(names)
    assert {name.encode() for name in OVERSIGNED_HEADERS} <= set(names)


@pytest.mark.parametrize(
    "added",
    [
        b"Reply-To: eve@example.net\r\n",
        b"List-Unsubscribe: <https://eve.example/u>\r\n",
        b"From: eve@example.net\r\n",
        b"Subject: another subject\r\n",
    ],
)
def test_an_added_identity_header_breaks_the_signature(key, dns, added):
    signed = DkimSigner("sel", "example.com", key).sign(message())
    assert dkim.verify(signed, dnsfunc=dns)
    # at the top, where a signer that names each header once would not look (RFC 6376 §5.4.2)
    assert not dkim.verify(added + signed, dnsfunc=dns)


def test_the_signature_header_is_folded(key):
    signed = DkimSigner("sel", "example.com", key).sign(message(reply_to="care@example.com"))
    head = signed.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    signature_lines = [lines[0]]
    for line in lines[1:]:
        if not line.startswith((b" ", b"\t")):
            break
        signature_lines.append(line)
    assert signature_lines[0].startswith(b"DKIM-Signature:")
    assert len(signature_lines) > 5
    assert max(len(line) for line in signature_lines) <= 78


@pytest.fixture(scope="module")
def other_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_a_keyring_signs_with_the_key_of_the_from_domain(tmp_path, key, other_key, dns):
    settings = SmtpSettings(
        dkim_selector="sel",
        dkim_domain="example.com",
        dkim_private_key_file=write_key(tmp_path / "a.pem", key),
        dkim_keys=[
            {
                "domain": "brand-b.example",
                "selector": "b",
                "private_key_file": write_key(tmp_path / "b.pem", other_key),
            }
        ],
    )
    keyring = DkimKeyring.from_settings(settings)
    assert keyring is not None and keyring.domains == ["example.com", "brand-b.example"]
    assert keyring.signer_for("brand-b.example").domain == "brand-b.example"
    assert keyring.signer_for("news.brand-b.example").domain == "brand-b.example"
    assert keyring.signer_for("mail.example.com").domain == "example.com"
    assert keyring.signer_for("unrelated.example").domain == "example.com"  # the first key
    raw = message(sender="B <shop@brand-b.example>")
    signed = keyring.sign(raw, "brand-b.example")
    public = other_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def txt(name, timeout=5):
        return record if name == b"b._domainkey.brand-b.example." else None

    assert dkim.verify(signed, dnsfunc=txt)
    assert dkim.verify(keyring.sign(message(), "example.com"), dnsfunc=dns)
    assert DkimKeyring.from_settings(SmtpSettings()) is None


def test_alignment_is_by_domain_or_subdomain():
    assert aligned_domains("example.com", "EXAMPLE.com.")
    assert aligned_domains("news.example.com", "example.com")
    assert aligned_domains("example.com", "mail.example.com")
    assert not aligned_domains("example.com", "example.net")
    assert not aligned_domains("badexample.com", "example.com")


def test_an_unaligned_from_domain_is_named(tmp_path, key):
    # no DKIM, no bounce domain: the envelope sender is in the From domain
    assert alignment_problem("example.com", SmtpSettings()) is None
    elsewhere = SmtpSettings(bounce_domain="bounces.example.net")
    assert "example.com" in alignment_problem("example.com", elsewhere)
    assert alignment_problem("example.net", elsewhere) is None
    signed = SmtpSettings(
        bounce_domain="bounces.example.net",
        dkim_selector="sel",
        dkim_domain="example.com",
        dkim_private_key_file=tmp_path / "unused.pem",
    )
    assert alignment_problem("shop.example.com", signed) is None
    assert "example.com" in alignment_problem("brand.example", signed)

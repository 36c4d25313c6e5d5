"""DKIM signing (RFC 6376), verified independently by dkimpy against the test public key."""

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from msgcenter.channels.email.config import SmtpSettings
from msgcenter.channels.email.dkim import DkimSigner
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

import pytest

from tfbuild.credentials import ca_bundle_files, pip_conf_text, redact_url, resolve_index_url
from tfbuild.errors import TfbuildError

CERT = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----"


def test_bundle_is_split_one_cert_per_file_and_deduplicated(tmp_path):
    other = CERT.replace(b"fake", b"other")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(CERT + b"\n" + other + b"\n" + CERT)
    files = ca_bundle_files([bundle])
    assert len(files) == 2
    assert all(name.endswith(".crt") for name in files)
    assert sorted(files.values()) == sorted([CERT + b"\n", other + b"\n"])


def test_non_pem_file_is_refused_with_the_conversion_hint(tmp_path):
    der = tmp_path / "ca.der"
    der.write_bytes(b"\x30\x82binary")
    with pytest.raises(TfbuildError, match="openssl x509 -inform der"):
        ca_bundle_files([der])


def test_env_references_expand_and_missing_ones_are_named():
    url = "https://${IDX_USER}:${IDX_TOKEN}@pypi.example/simple"
    got = resolve_index_url(
        url, {"IDX_USER": "me", "IDX_TOKEN": "s/cr t"}, netrc_path="/nonexistent"
    )
    assert got == "https://me:s%2Fcr%20t@pypi.example/simple"
    with pytest.raises(TfbuildError, match=r"\$\{IDX_TOKEN\}"):
        resolve_index_url(url, {"IDX_USER": "me"})


def test_netrc_supplies_credentials_for_a_bare_url(tmp_path):
    rc = tmp_path / "netrc"
    rc.write_text("machine pypi.example login bob password hunter2\n")
    rc.chmod(0o600)
    got = resolve_index_url("https://pypi.example/simple", {}, netrc_path=str(rc))
    assert got == "https://bob:hunter2@pypi.example/simple"


def test_pip_conf_only_when_an_index_is_set():
    assert pip_conf_text(None, []) == ""
    text = pip_conf_text("https://a.example/simple", ["https://b.example/simple"])
    assert "index-url = https://a.example/simple" in text
    assert "extra-index-url = https://b.example/simple" in text


def test_redaction_hides_user_and_password():
    assert redact_url("https://u:p@h.example/simple") == "https://***@h.example/simple"
    assert redact_url("https://h.example/simple") == "https://h.example/simple"

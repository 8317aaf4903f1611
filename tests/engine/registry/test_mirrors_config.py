"""``registries.toml`` parsing: what is accepted, what is refused, and where the file is looked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from gadgetstore.engine.registry import mirrors_config as mc
from gadgetstore.engine.registry.stall import StallPolicy

EXAMPLE = """
[[registry."ghcr.io".mirror]]
url = "http://10.0.0.7:5050"
insecure = true
path_prefix = "ghcr.io"

[[registry."ghcr.io".mirror]]
url = "cache.kube-system.svc:5000"
ca_file = "certs/cache.crt"
resolve = true

[registry."docker.io"]
mirror = [{ url = "https://mirror.example" }]
"""


def test_example_parses_in_order(tmp_path: Path) -> None:
    config = mc.parse(EXAMPLE, tmp_path / "registries.toml")
    peer, cache = config.mirrors_for("ghcr.io")
    assert peer == mc.Mirror("http://10.0.0.7:5050", insecure=True, path_prefix="ghcr.io")
    assert peer.label == "http://10.0.0.7:5050/ghcr.io"
    assert cache.base_url == "https://cache.kube-system.svc:5000"  # a bare host means https
    assert cache.ca_file == tmp_path / "certs" / "cache.crt"  # relative to the config file
    assert cache.resolve and not peer.resolve
    assert [m.base_url for m in config.mirrors_for("docker.io")] == ["https://mirror.example"]
    assert config.mirrors_for("quay.io") == ()


def test_bare_host_with_insecure_is_plain_http() -> None:
    config = mc.parse('[[registry."r.example".mirror]]\nurl = "127.0.0.1:5050"\ninsecure = true\n')
    assert config.mirrors_for("r.example")[0].base_url == "http://127.0.0.1:5050"


@pytest.mark.parametrize(("mirror", "message"), [
    ('url = "http://peer:5050"', "insecure = true"),
    ('url = "https://peer"\ninsecure = true', "asks for plain HTTP"),
    ('url = "https://peer/v2/x"', "use path_prefix"),
    ('url = "ftp://peer"', "must be http(s)"),
    ('url = "https://user:pw@peer"', "just scheme, host and port"),
    ('url = "https://peer:99999"', "invalid port"),
    ('url = "https://peer"\npath_prefix = "Bad Prefix"', "not a valid repository path"),
    ('url = "http://peer"\ninsecure = true\nca_file = "ca.crt"', "needs an https mirror"),
    ('url = "https://peer"\nskip_verify = true', "unknown key(s) skip_verify"),
    ('url = "https://peer"\ninsecure = "yes"', "must be true or false"),
    ("insecure = true", "url is required"),
])
def test_bad_mirrors_are_refused(mirror: str, message: str) -> None:
    with pytest.raises(mc.RegistriesConfigError, match="mirror 1") as info:
        mc.parse(f'[[registry."ghcr.io".mirror]]\n{mirror}\n')
    assert message in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("[mirrors]\n", "unknown key(s) mirrors"),
    ('[registry."ghcr.io"]\nmirrors = []\n', "unknown key(s) mirrors"),
    ('[registry."ghcr.io"]\nmirror = "http://x"\n', "array of tables"),
    ("not toml [", "not valid TOML"),
])
def test_bad_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(mc.RegistriesConfigError) as info:
        mc.parse(text)
    assert message in str(info.value)


def test_where_the_file_is_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mc.ENV_VAR, raising=False)
    monkeypatch.setattr(mc, "DEFAULT_PATH", tmp_path / "absent.toml")
    assert mc.load() == mc.RegistriesConfig()  # no default file: no mirrors, no error
    with pytest.raises(mc.RegistriesConfigError, match="does not exist"):
        mc.load(tmp_path / "missing.toml")
    from_env = tmp_path / "env.toml"
    from_env.write_text('[[registry."a.example".mirror]]\nurl = "https://m.example"\n')
    monkeypatch.setenv(mc.ENV_VAR, str(from_env))
    assert mc.load().mirrors_for("a.example")[0].base_url == "https://m.example"
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("")
    assert mc.load(explicit).mirrors == {}  # an explicit path wins over the environment
    monkeypatch.setenv(mc.ENV_VAR, str(tmp_path / "gone.toml"))
    with pytest.raises(mc.RegistriesConfigError, match="does not exist"):
        mc.load()


def test_transfer_table_sets_the_stall_policy() -> None:
    assert mc.parse("").stall == StallPolicy()  # 1 KiB/s over 30 s unless the file says otherwise
    assert mc.parse('[transfer]\nstall_floor = "4KiB/s"\nstall_window = "1m"\n').stall == StallPolicy(4096, 60)
    assert mc.parse("[transfer]\nstall_floor = 2048\nstall_window = 45\n").stall == StallPolicy(2048, 45)
    assert not mc.parse("[transfer]\nstall_floor = 0\n").stall.enabled


@pytest.mark.parametrize(("transfer", "message"), [
    ('stall_floor = "fast"', "'fast' is not a rate"),
    ('stall_window = "forever"', "'forever' is not a duration"),
    ("stall_window = 0", "stall_window more than 0"),
    ("stall_floor = -1", "stall_floor must be 0 or more"),
    ("stall_floor = true", "stall_floor must be a number or a string"),
    ('stall_timeout = "30s"', "unknown key(s) stall_timeout"),
])
def test_bad_transfer_settings_are_refused(transfer: str, message: str) -> None:
    with pytest.raises(mc.RegistriesConfigError, match=r"\[transfer\]") as info:
        mc.parse(f"[transfer]\n{transfer}\n")
    assert message in str(info.value)


def test_cert_dir_per_registry(tmp_path: Path) -> None:
    config = mc.parse('[registry."reg.corp:5000"]\ncert_dir = "certs/corp"\n'
                      '[registry."ghcr.io"]\ncert_dir = "/etc/certs/ghcr"\n', tmp_path / "registries.toml")
    assert config.cert_dir_for("reg.corp:5000") == tmp_path / "certs" / "corp"  # relative to the file
    assert config.cert_dir_for("ghcr.io") == Path("/etc/certs/ghcr")
    assert config.cert_dir_for("quay.io") is None
    assert config.all_cert_dirs() == [Path("/etc/certs/ghcr"), tmp_path / "certs" / "corp"]
    with pytest.raises(mc.RegistriesConfigError, match="cert_dir must be a path"):
        mc.parse('[registry."ghcr.io"]\ncert_dir = 5\n')

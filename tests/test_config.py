"""A kiosk config with a bad [agent] section is refused at load, naming the field."""

from __future__ import annotations

import pytest

from edge.config import ConfigError, KioskConfig
from edge.validation import dump, load
from kiosk.link import agent_settings, load_kiosk_config


def test_bad_agent_section_names_the_field(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text(
        '[kiosk]\nid = "t1"\nsite = "pool"\nrole = "topup"\n\n'
        '[agent.broker]\nhost = "broker.example"\nport = "not a port"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_kiosk_config(path)
    assert "agent.broker.port" in str(info.value)


def test_agent_takes_site_device_and_key_from_the_kiosk_section(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text(
        f'[kiosk]\nid = "t1"\nsite = "pool"\nrole = "topup"\nstate_dir = "{tmp_path}"\n'
        f'key_file = "{tmp_path}/d.key"\n\n[agent.broker]\nhost = "broker.example"\n'
    )
    settings = agent_settings(load_kiosk_config(path))
    assert settings is not None
    assert (settings.site, settings.device) == ("pool", "t1")
    assert settings.key_file == tmp_path / "d.key"
    assert settings.state_file == tmp_path / "agent.db"
    assert settings.broker.host == "broker.example"


def test_every_config_reader_names_faults_the_same_way(tmp_path):
    """The kiosk config, the cloud config and a sim scenario each report a wrong setting on one
    line as `place: what is wrong`, with no pydantic banner or URL."""
    from cloud_sync.errors import ConfigError as CloudConfigError
    from cloud_sync.settings import load_config as load_cloud_config
    from kiosk.sim.scenario import ScenarioError, parse

    kiosk_toml = tmp_path / "kiosk.toml"
    kiosk_toml.write_text('[kiosk]\nid = "t1"\nsite = "pool"\nrole = "nope"\n')
    cloud_toml = tmp_path / "cloud.toml"
    cloud_toml.write_text('[reconciler]\nbatch_size = "lots"\n')
    faults = []
    for read, error in (
        (lambda: load_kiosk_config(kiosk_toml), ConfigError),
        (lambda: load_cloud_config(cloud_toml), CloudConfigError),
        (lambda: parse("[fleet]\nkiosks = -3\n"), ScenarioError),
    ):
        with pytest.raises(error) as info:
            read()
        faults.append(str(info.value))
    assert "kiosk.role: " in faults[0]
    assert "reconciler." in faults[1]
    assert "fleet.kiosks: " in faults[2]
    for text in faults:
        assert "\n" not in text and "pydantic" not in text and "errors.pydantic.dev" not in text


GATE = '[kiosk]\nid = "g"\nsite = "s"\nrole = "gate"\nproduct = "swim"\n'
SWIM = '[rules.products.swim]\nname = "Swim"\nprice = 2500\n'


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        (
            GATE + SWIM + "[[rules.tiers]]\nname = 'gold'\nmin_points = -1\n",
            "rules.tiers.0.min_points: ",
        ),
        (
            GATE + SWIM + "[rules.categories.kid.prices]\nswim = -5\n",
            "rules.categories.kid.prices.swim: ",
        ),
        (
            GATE + SWIM + "[rules.products.run]\nname = 'Run'\nprice = 2.5\n",
            "rules.products.run.price: ",
        ),
        (
            GATE + SWIM + "[gpio]\nbackend = 'sim'\ncoin_pin = 6\ncoin_pulses = {x = 1}\n",
            "gpio.coin_pulses: a key",
        ),
        (GATE + SWIM + "[kiosk.extra]\n", "kiosk.extra: not a known setting"),
        (GATE.replace('site = "s"\n', "") + SWIM, "kiosk.site: required, missing"),
        (GATE + SWIM + "state_dir = 5\n", "rules.products.swim.state_dir: not a known setting"),
        (GATE + "state_dir = 5\n" + SWIM, "kiosk.state_dir: Expected a path"),
        (
            GATE.replace("gate", "door") + SWIM,
            "kiosk.role: Invalid enum value 'door' (one of: gate, pos, topup)",
        ),
        (GATE + SWIM + "[offline]\nmode = 'risk'\n", "offline: mode = 'risk' needs risk_per_tap"),
        (
            GATE.replace("swim", "golf") + SWIM,
            "(top level): kiosk.product 'golf' is not in [rules.products]",
        ),
    ],
)
def test_a_fault_is_named_by_its_dotted_place(tmp_path, text, fault):
    path = tmp_path / "kiosk.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_kiosk_config(path)
    assert f"{path}: wrong settings: {fault}" in str(info.value)


def test_settings_dump_and_load_back_to_the_same(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text(GATE + SWIM + '[rules.categories.kid]\nprices = {swim = "12.00"}\n')
    cfg = load_kiosk_config(path)
    assert cfg.rules.categories["kid"].prices == {"swim": 1200}
    assert type(cfg.rules.categories["kid"].prices["swim"]) is int  # msgspec encodes it in ops
    assert load(KioskConfig, dump(cfg)) == cfg


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("[reconciler]\nkey_file = 3\n", "reconciler.key_file"),
        ("reconciler = 5\n", "reconciler"),
        ('[reconciler]\nkey_file = "k"\n[reconciler.broker]\ntls = 1\n', "reconciler.broker.tls"),
        (
            '[reconciler]\nkey_file = "k"\n[console]\nsecret_key_file = 7\n',
            "console.secret_key_file",
        ),
    ],
)
def test_a_cloud_config_with_a_wrong_type_where_a_path_goes_is_one_line(tmp_path, text, place):
    from cloud_sync.errors import ConfigError as CloudConfigError
    from cloud_sync.settings import load_config as load_cloud_config

    path = tmp_path / "cloud.toml"
    path.write_text(text)
    with pytest.raises(CloudConfigError) as info:
        load_cloud_config(path)
    assert f"wrong settings: {place}" in str(info.value)

"""A kiosk config with a bad [agent] section is refused at load, naming the field."""

from __future__ import annotations

import pytest

from edge.config import ConfigError
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

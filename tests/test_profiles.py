"""Profiles: built-in, files (YAML and JSON), extends, overrides, schema errors that name the fix."""

from __future__ import annotations

import json

import pytest

from dask_aws_magic.core import profiles, units
from dask_aws_magic.core.errors import InvalidName, ProfileError
from dask_aws_magic.core.naming import check_name


def write(home, name, text, suffix=".yaml"):
    folder = home / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{suffix}"
    path.write_text(text)
    return path


def test_builtin_local_exists(home):
    loaded = profiles.load("local")
    assert loaded.backend == "local"
    assert loaded.source == "built-in"
    assert "local" in profiles.available()


def test_yaml_and_json_files_and_extends(home):
    write(home, "base", "backend: ec2\nregion: us-east-1\ninstance:\n  type: m6i.large\n  tags: {team: a}\n"
                        "worker:\n  count: 2\n")
    write(home, "big", json.dumps({"extends": "base", "worker": {"count": 8, "type": "m6i.4xlarge",
                                                                  "tags": {"size": "big"}}}), ".json")
    loaded = profiles.load("big")
    assert loaded.chain == ["base"]
    assert loaded.data["worker"]["count"] == 8
    assert loaded.data["region"] == "us-east-1"
    assert loaded.role("worker") == {"type": "m6i.4xlarge", "tags": {"team": "a", "size": "big"}}
    assert loaded.role("scheduler") == {"type": "m6i.large", "tags": {"team": "a"}}


def test_overrides_are_typed(home):
    loaded = profiles.load("local", ["worker.count=8", "network.tls=false", "lifecycle.idle_timeout=20m",
                                     "software.pip=[pandas, pyarrow]"])
    assert loaded.data["worker"]["count"] == 8
    assert loaded.data["network"]["tls"] is False
    assert loaded.data["lifecycle"]["idle_timeout"] == "20m"
    assert loaded.data["software"]["pip"] == ["pandas", "pyarrow"]
    assert units.parse_duration("20m") == 1200
    assert units.parse_memory("2GiB") == 2 * 2**30


def test_unknown_profile_suggests(home):
    write(home, "gpu-big", "backend: local\n")
    with pytest.raises(ProfileError, match=r"no profile named 'gpu-bgi'.*Did you mean `gpu-big`"):
        profiles.load("gpu-bgi")


def test_invalid_yaml_names_file_and_line(home):
    path = write(home, "broken", "worker:\n  count: [2\n")
    with pytest.raises(ProfileError) as info:
        profiles.load("broken")
    assert str(path) in str(info.value) and "line" in str(info.value)


def test_wrong_type_names_field(home):
    write(home, "typo", "worker:\n  count: many\n")
    with pytest.raises(ProfileError, match=r"`worker.count` is 'many', but must be of type integer"):
        profiles.load("typo")


@pytest.mark.parametrize("count", [0, -3])
def test_zero_or_negative_workers(home, count):
    with pytest.raises(ProfileError, match=rf"`worker.count` is {count}, but must be at least 1"):
        profiles.load("local", [f"worker.count={count}"])


def test_unknown_field_suggests_closest(home):
    write(home, "misspelt", "workers:\n  count: 2\n")
    with pytest.raises(ProfileError, match=r"`workers` is not a profile field \(did you mean `worker`\?\)"):
        profiles.load("misspelt")


def test_bad_enum_and_bad_override_syntax(home):
    with pytest.raises(ProfileError, match="choose one of: local, ec2, ecs, fargate"):
        profiles.load("local", ["backend=kubernetes"])
    with pytest.raises(ProfileError, match="KEY=VALUE"):
        profiles.load("local", ["worker.count"])


def test_extends_cycle(home):
    write(home, "a", "extends: b\n")
    write(home, "b", "extends: a\n")
    with pytest.raises(ProfileError, match="circle"):
        profiles.load("a")


def test_cell_body_errors_name_the_cell(home):
    with pytest.raises(ProfileError, match="cell body"):
        profiles.load("cell", body="- just\n- a list\n")


@pytest.mark.parametrize("name", ["Has_Caps", "with space", "a/b", "-dash", "x" * 41, "émoji", "", "zz\n"])
def test_bad_cluster_names(name):
    with pytest.raises(InvalidName, match="lowercase letters, digits and dashes"):
        check_name(name)


def test_ids_and_owners_read_from_tags_are_checked_to_their_end():
    from dask_aws_magic.core.naming import is_cluster_id, is_owner

    assert is_cluster_id("dam-0123456789ab") and not is_cluster_id("dam-0123456789ab\n")
    assert is_owner("arn:aws:iam::123456789012:role/team/ds") and is_owner("local:alice") and is_owner("")
    assert not is_owner("local:alice\nbob  local  running") and not is_owner("x" * 257) and not is_owner(3)


def test_schema_is_shipped_and_valid():
    import jsonschema

    jsonschema.Draft7Validator.check_schema(profiles.schema())
    assert profiles.schema_path().is_file()


@pytest.mark.parametrize("override", [
    "software.python=3.11$(id)",
    "software.dask='2024.1.0\"'",
    "software.env.BAD;NAME=x",
    "software.pip=['pandas; rm -rf /']",
    "software.image='img; id'",
])
def test_values_that_reach_the_user_data_shell_are_checked(home, override):
    with pytest.raises(ProfileError, match="software"):
        profiles.load("local", [override])


def test_string_fields_keep_what_was_typed(home):
    loaded = profiles.load("local", ["software.python=3.10", "lifecycle.idle_timeout=off"])
    assert loaded.data["software"]["python"] == "3.10"  # not the float 3.1
    assert units.parse_duration(loaded.data["lifecycle"]["idle_timeout"]) == 0


@pytest.mark.parametrize(("override", "message"), [
    ({"worker.count": 2.0}, r"`worker.count` \(2.0\) must be a whole number"),
    ({"worker.nthreads": 1.5}, r"worker.nthreads"),
    ({"worker.count": 5000}, r"limit of 100 workers.*limits.max_workers"),
    ({"network.ingress_cidr": "10.0.0.1/8"}, r"host bits set.*10.0.0.0/8"),
    ({"network.ingress_cidr": "0.0.0.0/0"}, r"whole internet.*network.allow_world: true"),
    ({"network.ingress_cidr": "0.0.0.0/00"}, r"whole internet.*network.allow_world: true"),  # AWS reads /0
    ({"network.ingress_cidr": "0.0.0.0/1"}, r"2,147,483,648 addresses \(0.0.0.0/1, more than a /8\).*allow_world"),
    ({"network.ingress_cidr": "10.0.0.0/7"}, r"more than a /8.*network.allow_world: true"),
    ({"network.tls": False, "network.ingress_cidr": "10.0.0.0/8"}, r"network.allow_unauthenticated: true"),
])
def test_hostile_or_mistaken_values_are_profile_errors(home, override, message):
    with pytest.raises(ProfileError, match=message):
        profiles.load("local", override)


def test_a_network_of_a_slash_8_or_narrower_needs_no_acknowledgement(home):
    for cidr in ("10.0.0.0/8", "203.0.113.0/24", "203.0.113.7/32"):
        assert profiles.load("local", {"network.ingress_cidr": cidr}).data["network"]["ingress_cidr"] == cidr


def test_acknowledged_values_are_accepted(home):
    loaded = profiles.load("local", {"worker.count": 500, "limits.max_workers": 1000,
                                     "network.ingress_cidr": "0.0.0.0/0", "network.allow_world": True,
                                     "network.tls": False, "network.allow_unauthenticated": True})
    assert loaded.data["worker"]["count"] == 500


def test_extends_cannot_leave_the_profiles_folder(home):
    (home / "profiles").mkdir(parents=True)
    (home / "outside.yaml").write_text("description: not a profile of yours\n")
    for parent in ("../outside", "/etc/passwd", "..", "a/b"):
        with pytest.raises(InvalidName, match="profile name in `extends`"):
            profiles.load("x", body=f"extends: {parent!r}\n")

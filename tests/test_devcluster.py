"""``trafka dev-cluster``'s plan: every node's overrides form a valid KRaft combined-mode config
that agrees with the others on the voters, and no two nodes share a port or a data directory."""

from __future__ import annotations

from broker.config import load
from broker.devcluster import CONTROLLER_PORT_OFFSET, node_overrides


def test_every_node_config_is_valid_and_consistent(tmp_path) -> None:
    configs = [load(None, node_overrides(i, 3, str(tmp_path), 19092)) for i in (1, 2, 3)]
    ports = set()
    for i, cfg in enumerate(configs, 1):
        assert cfg.node_id == i
        assert set(cfg.process_roles) == {"broker", "controller"}
        assert [v.node_id for v in cfg.controller_quorum_voters] == [1, 2, 3]
        assert cfg.controller_quorum_voters == configs[0].controller_quorum_voters
        assert cfg.min_insync_replicas == 2 and cfg.default_replication_factor == 3
        for lst in cfg.listeners:
            ports.add(lst.port)
        assert [lst.port for lst in cfg.controller_listeners] == [19092 + CONTROLLER_PORT_OFFSET + i - 1]
    assert len(ports) == 6
    assert len({cfg.log_dirs for cfg in configs}) == 3


def test_a_single_node_cluster_needs_no_quorum_of_three(tmp_path) -> None:
    cfg = load(None, node_overrides(1, 1, str(tmp_path), 19092))
    assert cfg.min_insync_replicas == 1 and cfg.default_replication_factor == 1

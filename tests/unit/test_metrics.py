"""PrometheusMonitor: exactly the documented metrics, with closed label sets and base units."""

from __future__ import annotations

import inspect

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from signer.errors import DoubleVote, SurroundingVote
from signer.observability.metrics import (
    DURATION_BUCKETS_S,
    MAX_CLIENT_LABELS,
    METRIC_NAMES,
    OFFENCES,
    PrometheusMonitor,
)
from signer.types import Monitor, RequestOutcome, Scheme


def record_one_of_each(monitor: PrometheusMonitor) -> None:
    """One event of every kind the Monitor protocol reports (shared with the integration tests)."""
    monitor.request_done("SignBeaconAttestation", RequestOutcome.SUCCEEDED, 0.0012)
    monitor.signed(Scheme.BLS, 3, 0.0009)
    monitor.batch(3)
    monitor.refusal(DoubleVote.offence)
    monitor.store_latency("check_and_record", 0.0004)
    monitor.rate_limited("vc-1")
    monitor.module_error("pkcs11")
    monitor.keys_loaded("emulated", Scheme.SECP256K1, 2)
    monitor.ready(True)
    monitor.access_denied("vc-2", "key_admin")


def samples(monitor: PrometheusMonitor) -> list[Sample]:
    return [
        sample
        for family in text_string_to_metric_families(monitor.render().decode("utf-8"))
        for sample in family.samples
    ]


def value(monitor: PrometheusMonitor, name: str, **labels: str) -> float:
    found = [s.value for s in samples(monitor) if s.name == name and s.labels == labels]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def test_implements_every_method_of_the_monitor_protocol() -> None:
    wanted = {name for name, member in vars(Monitor).items() if callable(member) and not name.startswith("_")}
    assert {"request_done", "signed", "ready"} <= wanted
    for name in wanted:
        ours = inspect.signature(getattr(PrometheusMonitor, name))
        assert list(ours.parameters) == list(inspect.signature(getattr(Monitor, name)).parameters), name


def test_access_denied_adds_no_series() -> None:
    monitor = PrometheusMonitor()
    before = monitor.render()
    monitor.access_denied("vc-1", "key_admin")
    assert monitor.render() == before


def test_exposes_exactly_the_documented_families() -> None:
    monitor = PrometheusMonitor()
    record_one_of_each(monitor)
    families = {f.name: f.type for f in text_string_to_metric_families(monitor.render().decode())}
    # the text parser strips _total from counter family names
    expected = {
        "signer_requests": "counter",
        "signer_request_duration_seconds": "histogram",
        "signer_signing_duration_seconds": "histogram",
        "signer_signatures": "counter",
        "signer_batch_size": "histogram",
        "signer_protection_refusals": "counter",
        "signer_protection_store_duration_seconds": "histogram",
        "signer_rate_limited": "counter",
        "signer_keys_loaded": "gauge",
        "signer_module_errors": "counter",
        "signer_build_info": "gauge",
        "signer_ready": "gauge",
        "signer_log_lines_dropped": "counter",
        "signer_security_events": "counter",
        "signer_protection_initialized": "gauge",
        "signer_audit_chain_head_seq": "gauge",
        "signer_audit_chain_head_hash": "gauge",
    }
    assert families == expected
    assert {n.removesuffix("_total") for n in METRIC_NAMES} == set(expected)


def test_one_event_of_each_kind_is_counted() -> None:
    monitor = PrometheusMonitor()
    record_one_of_each(monitor)
    assert value(monitor, "signer_requests_total", method="SignBeaconAttestation", outcome="succeeded") == 1
    assert value(monitor, "signer_request_duration_seconds_count", method="SignBeaconAttestation") == 1
    assert value(monitor, "signer_request_duration_seconds_sum", method="SignBeaconAttestation") == 0.0012
    assert value(monitor, "signer_signatures_total", scheme="bls") == 3
    assert value(monitor, "signer_signing_duration_seconds_count", scheme="bls") == 1
    assert value(monitor, "signer_batch_size_sum") == 3
    assert value(monitor, "signer_protection_refusals_total", offence="double_vote") == 1
    assert value(monitor, "signer_protection_store_duration_seconds_count", operation="check_and_record") == 1
    assert value(monitor, "signer_rate_limited_total", client="vc-1") == 1
    assert value(monitor, "signer_module_errors_total", module="pkcs11") == 1
    assert value(monitor, "signer_keys_loaded", module="emulated", scheme="secp256k1") == 2
    assert value(monitor, "signer_ready") == 1


def test_duration_buckets_resolve_one_millisecond_to_one_second() -> None:
    assert {0.001, 0.005, 0.01, 0.1, 1.0} <= set(DURATION_BUCKETS_S)
    assert min(DURATION_BUCKETS_S) < 0.001 and max(DURATION_BUCKETS_S) > 1.0
    monitor = PrometheusMonitor()
    monitor.request_done("SignBeaconProposal", "succeeded", 0.0007)
    name, method = "signer_request_duration_seconds_bucket", "SignBeaconProposal"
    assert value(monitor, name, method=method, le="0.0005") == 0
    assert value(monitor, name, method=method, le="0.001") == 1


def test_batch_size_buckets_span_one_to_a_thousand() -> None:
    monitor = PrometheusMonitor()
    for size in (1, 1000, 1001):
        monitor.batch(size)
    bounds = [s.labels["le"] for s in samples(monitor) if s.name == "signer_batch_size_bucket"]
    assert bounds[0] == "1.0" and "1000.0" in bounds and bounds[-1] == "+Inf"
    assert value(monitor, "signer_batch_size_bucket", le="1.0") == 1
    assert value(monitor, "signer_batch_size_bucket", le="1000.0") == 2
    assert value(monitor, "signer_batch_size_bucket", le="+Inf") == 3


@pytest.mark.parametrize("outcome", [o.value for o in RequestOutcome], ids=[o.value for o in RequestOutcome])
def test_every_outcome_is_its_own_label_value(outcome: str) -> None:
    monitor = PrometheusMonitor()
    monitor.request_done("SignVote", outcome, 0.001)
    assert value(monitor, "signer_requests_total", method="SignVote", outcome=outcome) == 1


def test_an_outcome_outside_the_enum_counts_as_failed() -> None:
    monitor = PrometheusMonitor()
    monitor.request_done("SignVote", "0xdeadbeef", 0.001)
    assert value(monitor, "signer_requests_total", method="SignVote", outcome="failed") == 1
    assert b"deadbeef" not in monitor.render()


def test_refusals_start_at_zero_for_every_offence_and_unknown_offences_fold_into_other() -> None:
    monitor = PrometheusMonitor()
    assert {"double_vote", "surrounding_vote", "height_regression", "double_block_proposal"} <= OFFENCES
    for offence in OFFENCES:
        assert value(monitor, "signer_protection_refusals_total", offence=offence) == 0
    monitor.refusal(SurroundingVote.offence)
    monitor.refusal("0x" + "ab" * 48)
    assert value(monitor, "signer_protection_refusals_total", offence="surrounding_vote") == 1
    assert value(monitor, "signer_protection_refusals_total", offence="other") == 1
    assert b"abab" not in monitor.render()


def test_rate_limited_client_labels_are_bounded() -> None:
    monitor = PrometheusMonitor()
    for i in range(MAX_CLIENT_LABELS + 10):
        monitor.rate_limited(f"client-{i}")
    monitor.rate_limited("client-0")
    clients = {s.labels["client"] for s in samples(monitor) if s.name == "signer_rate_limited_total"}
    assert len(clients) == MAX_CLIENT_LABELS + 1
    assert value(monitor, "signer_rate_limited_total", client="other") == 10
    assert value(monitor, "signer_rate_limited_total", client="client-0") == 2


def test_build_info_is_one_with_version_and_python() -> None:
    monitor = PrometheusMonitor(version="1.2.3")
    build = [s for s in samples(monitor) if s.name == "signer_build_info"]
    assert len(build) == 1 and build[0].value == 1
    assert build[0].labels["version"] == "1.2.3"
    assert build[0].labels["python"].startswith("3.")


def test_ready_follows_the_last_report() -> None:
    monitor = PrometheusMonitor()
    assert value(monitor, "signer_ready") == 0
    monitor.ready(True)
    assert value(monitor, "signer_ready") == 1
    monitor.ready(False)
    assert value(monitor, "signer_ready") == 0


def test_protection_initialized_starts_at_zero_and_follows_the_last_report() -> None:
    monitor = PrometheusMonitor()
    assert value(monitor, "signer_protection_initialized") == 0
    monitor.protection_initialized(True)
    assert value(monitor, "signer_protection_initialized") == 1
    monitor.protection_initialized(False)
    assert value(monitor, "signer_protection_initialized") == 0


def test_keys_loaded_is_set_not_added() -> None:
    monitor = PrometheusMonitor()
    monitor.keys_loaded("pkcs11", Scheme.ED25519, 5)
    monitor.keys_loaded("pkcs11", Scheme.ED25519, 4)
    assert value(monitor, "signer_keys_loaded", module="pkcs11", scheme="ed25519") == 4


def test_monitors_do_not_share_a_registry() -> None:
    first, second = PrometheusMonitor(), PrometheusMonitor()
    first.module_error("emulated")
    assert value(first, "signer_module_errors_total", module="emulated") == 1
    assert not [s for s in samples(second) if s.name == "signer_module_errors_total"]


def test_no_label_names_a_key() -> None:
    monitor = PrometheusMonitor()
    record_one_of_each(monitor)
    label_names = {name for s in samples(monitor) for name in s.labels}
    assert label_names <= {
        "method",
        "outcome",
        "scheme",
        "offence",
        "operation",
        "client",
        "module",
        "version",
        "python",
        "le",
        "stream",
        "event",
    }


def test_dropped_log_lines_are_counted_per_stream() -> None:
    monitor = PrometheusMonitor()
    assert value(monitor, "signer_log_lines_dropped_total", stream="audit") == 0  # exposed from the start
    assert value(monitor, "signer_log_lines_dropped_total", stream="log") == 0
    monitor.lines_dropped("audit", 3)
    monitor.lines_dropped("log")
    monitor.lines_dropped("anything-else")
    assert value(monitor, "signer_log_lines_dropped_total", stream="audit") == 3
    assert value(monitor, "signer_log_lines_dropped_total", stream="log") == 1
    assert value(monitor, "signer_log_lines_dropped_total", stream="other") == 1


def test_security_events_are_counted_per_event() -> None:
    monitor = PrometheusMonitor()
    assert value(monitor, "signer_security_events_total", event="wrong_passphrase") == 0
    monitor.security_event("wrong_passphrase")
    monitor.security_event("passphrase_lockout")
    monitor.security_event("unheard-of")
    assert value(monitor, "signer_security_events_total", event="wrong_passphrase") == 1
    assert value(monitor, "signer_security_events_total", event="passphrase_lockout") == 1
    assert value(monitor, "signer_security_events_total", event="other") == 1


def test_the_audit_chain_head_is_exported_as_its_seq_and_the_first_52_bits_of_its_hash() -> None:
    monitor = PrometheusMonitor()
    assert value(monitor, "signer_audit_chain_head_seq") == -1  # none yet
    head = "f" * 13 + "0" * 51
    monitor.audit_chain_head(41, head)
    assert value(monitor, "signer_audit_chain_head_seq") == 41
    assert value(monitor, "signer_audit_chain_head_hash") == 2**52 - 1  # exact in a float64
    assert f"{int(value(monitor, 'signer_audit_chain_head_hash')):013x}" == head[:13]

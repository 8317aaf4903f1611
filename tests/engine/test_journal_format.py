import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gadgetstore.engine import journal_format as jf
from tests.support.journals import NOT_RECORDS, checksummed

DESC = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + "a" * 64, "size": 3}


def journal(*transactions: list[jf.Op]) -> bytes:
    return jf.HEADER + b"".join(jf.encode_transaction(ops) for ops in transactions)


def test_replay_applies_transactions_in_order() -> None:
    data = journal([jf.Tag("r1", DESC)], [jf.Tag("r2", DESC)],
                   [jf.Untag("r1")])
    replay = jf.decode(data)
    assert replay.damage is None and replay.valid_length == len(data)
    assert list(jf.replay_state(replay).tags) == ["r2"]


def test_torn_tail_is_detected_and_not_trusted() -> None:
    full = journal([jf.Tag("r1", DESC)], [jf.Tag("r2", DESC)])
    first_end = len(journal([jf.Tag("r1", DESC)]))
    replay = jf.decode(full[:-1])  # lost the final newline
    assert replay.valid_length == first_end
    assert replay.damage is not None and "torn" in replay.damage
    assert list(jf.replay_state(replay).tags) == ["r1"]


def test_corrupt_record_stops_replay_there() -> None:
    full = bytearray(journal([jf.Tag("r1", DESC)], [jf.Tag("r2", DESC)],
                             [jf.Tag("r3", DESC)]))
    second = full.index(b"r2")
    full[second] = ord("x")  # same length, checksum no longer matches
    replay = jf.decode(bytes(full))
    assert replay.damage is not None and "corrupt" in replay.damage
    assert list(jf.replay_state(replay).tags) == ["r1"]


def test_damaged_header_trusts_nothing() -> None:
    replay = jf.decode(b"garbage\n" + jf.encode_transaction([jf.Tag("r", DESC)]))
    assert replay.valid_length == 0 and replay.damage and not replay.transactions


def test_oci_index_carries_ref_names_and_journal_length() -> None:
    state = jf.IndexState()
    state.apply([jf.Tag("ghcr.io/x/y:latest", DESC), jf.Pin(DESC)])
    index = state.oci_index(123)
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "ghcr.io/x/y:latest"
    assert "annotations" not in index["manifests"][1]
    assert index["annotations"][jf.JOURNAL_LENGTH_ANNOTATION] == "123"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=8), st.data())
def test_any_truncation_replays_a_prefix_of_what_was_written(refs: list[str], data: st.DataObject) -> None:
    txs = [[jf.Tag(ref, DESC)] for ref in refs]
    full = journal(*txs)
    cut = data.draw(st.integers(min_value=0, max_value=len(full)))
    replay = jf.decode(full[:cut])
    assert replay.transactions == txs[: len(replay.transactions)]
    assert replay.valid_length <= cut
    assert (replay.damage is None) == (replay.valid_length == cut)


def test_tag_times_are_replayed_kept_on_a_retag_and_survive_compaction() -> None:
    other = {**DESC, "digest": "sha256:" + "b" * 64}
    data = journal(jf.stamped([jf.Tag("r1", DESC), jf.Pin(DESC)], 100),
                   jf.stamped([jf.Tag("r1", DESC),
                               jf.Tag("r2", DESC)], 200),
                   jf.stamped([jf.Tag("r2", other)], 300),
                   [jf.Tag("r3", DESC)])  # written before tags had times
    state = jf.replay_state(jf.decode(data))
    # r1 re-tagged to the same image keeps its first time; r2 moved to another image at 300
    assert state.tag_times == {"r1": 100, "r2": 300}
    compacted = jf.replay_state(jf.decode(journal(state.snapshot_ops())))
    assert (compacted.tags, compacted.tag_times) == (state.tags, state.tag_times)
    compacted.apply([jf.Untag("r1")])
    compacted.apply(jf.stamped([jf.Tag("r1", DESC)], 400))
    assert compacted.tag_times["r1"] == 400


def test_stamping_leaves_other_operations_and_given_times_alone() -> None:
    ops = [jf.Tag("a", DESC), jf.Tag("b", DESC, 5),
           jf.Untag("c"), jf.Pin(DESC)]
    assert jf.stamped(ops, 9) == [jf.Tag("a", DESC, 9), ops[1], ops[2], ops[3]]
    assert ops[0] == jf.Tag("a", DESC)  # the caller's operations are not changed


def test_a_checksummed_record_of_unknown_operations_is_corrupt_not_torn() -> None:
    good = journal([jf.Tag("r1", DESC)])
    record = checksummed(b'{"ops":[{"op":"tag","ref":"r2"}]}')
    replay = jf.decode(good + record)
    assert replay.damage == f"corrupt record at byte {len(good)} (tag without a descriptor)" and not replay.torn
    assert replay.valid_length == len(good) and list(jf.replay_state(replay).tags) == ["r1"]
    assert jf.salvage(good + record) == ([[jf.Tag("r1", DESC)]], 1)


@pytest.mark.parametrize(("payload", "why"), NOT_RECORDS.values(), ids=NOT_RECORDS.keys())
def test_a_checksummed_record_the_format_does_not_define_is_damage(payload: bytes, why: str) -> None:
    """Replay stops before it with the reason, as for a failed checksum (not a torn tail, and no
    KeyError, TypeError or RecursionError out of decode); the repair's salvage drops it alone."""
    good = journal([jf.Tag("r1", DESC)])
    data = good + checksummed(payload) + jf.encode_transaction([jf.Tag("r3", DESC)])
    replay = jf.decode(data)
    assert replay.damage == f"corrupt record at byte {len(good)} ({why})" and not replay.torn
    assert replay.valid_length == len(good) and list(jf.replay_state(replay).tags) == ["r1"]
    assert jf.salvage(data) == ([[jf.Tag("r1", DESC)], [jf.Tag("r3", DESC)]], 1)


def test_an_operation_that_is_not_one_is_a_typed_error() -> None:
    """What decode turns into damage: BadOperation, never the KeyError or TypeError of a lookup."""
    for obj in [None, "tag", ["op", "tag"], {"op": None}, {"op": "tag", "ref": "r", "desc": {**DESC, "digest": 1}},
                {"op": "pin", "desc": {**DESC, "digest": "sha256:zz"}}]:
        with pytest.raises(jf.BadOperation):
            jf.op_from_json(obj)


def test_a_journal_read_on_from_an_offset_reports_the_files_positions() -> None:
    """A refresh reads only what was appended: its damage and valid length are still the file's bytes."""
    good = journal([jf.Tag("r1", DESC)])
    tail = jf.encode_transaction([jf.Tag("r2", DESC)]) + checksummed(b'{"ops":[7]}')
    replay = jf.decode(tail, offset=len(good))
    at = len(good) + len(jf.encode_transaction([jf.Tag("r2", DESC)]))
    assert (replay.valid_length, replay.damage) == (at, f"corrupt record at byte {at} (an operation is not an object)")
    assert jf.decode(b"garbage\n", offset=0).damage == "journal header is missing or damaged"


def test_a_record_reads_back_as_written_a_lone_surrogate_included() -> None:
    """The journal is this program's own JSON: a string it wrote (an annotation made of a command
    line's undecodable bytes) replays unchanged, not as U+FFFD, as in the process that wrote it."""
    desc = {**DESC, "annotations": {"note": "a\udcffb"}}
    replay = jf.decode(journal([jf.Tag("r1", desc)]))
    assert replay.damage is None
    assert jf.replay_state(replay).tags["r1"]["annotations"] == {"note": "a\udcffb"}

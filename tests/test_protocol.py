"""The wire vocabulary and framing, against msgpack's own encoder and RFC 6455."""

import msgpack
import numpy as np
import pytest

from yapbench import protocol as P
from yapbench import wsframe


@pytest.mark.parametrize("n", [0, 1, 15, 16, 1920, 65535, 65536])
def test_encode_audio_is_byte_identical_to_msgpack(n):
    pcm = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    expected = msgpack.packb({"type": "Audio", "pcm": pcm.tolist()}, use_single_float=True)
    assert P.encode_audio(pcm) == expected


def test_client_messages_round_trip_and_unknown_types_are_errors():
    pcm = np.linspace(-1, 1, 1920, dtype=np.float32)
    assert np.array_equal(P.decode_client_message(P.encode_audio(pcm)).pcm, pcm)
    # what a float64 / int client sends still decodes, as serde would widen or narrow it
    assert P.decode_client_message(msgpack.packb({"type": "Audio", "pcm": [1, 0.5]})).pcm.tolist() == [1.0, 0.5]
    assert P.decode_client_message(P.encode_marker(7)) == P.Marker(7)
    with pytest.raises(P.ProtocolError, match="Flush"):
        P.decode_client_message(msgpack.packb({"type": "Flush"}))
    with pytest.raises(P.ProtocolError, match="not msgpack"):
        P.decode_client_message(b"\xc1garbage")
    with pytest.raises(P.ProtocolError, match="array"):
        P.decode_client_message(msgpack.packb({"type": "Audio", "pcm": b"\x00" * 8}))


@pytest.mark.parametrize("msg", [P.Ready(), P.Word("Hello,", 1.25), P.EndWord(1.5), P.Marker(3),
                                 P.Error("no free channels"), P.Step(42, (0.5, 0.25, 0.125, 1.0), 1920)])
def test_server_messages_round_trip(msg):
    assert P.decode_server_message(P.encode_server_message(msg)) == msg


def test_undecodable_server_message_is_a_protocol_error_not_a_crash():
    for bad in (b"", b"\xff\xfe", msgpack.packb([1, 2]), msgpack.packb({"type": "Word"}), msgpack.packb({"x": 1})):
        with pytest.raises(P.ProtocolError):
            P.decode_server_message(bad)


def test_frames_round_trip_both_directions_including_fragments_and_split_reads():
    payloads = [b"", b"x" * 125, b"y" * 126, b"z" * 70000]
    wire = b"".join(wsframe.client_frame(p) for p in payloads)
    reader = wsframe.FrameReader(expect_masked=True)
    got = []
    for i in range(0, len(wire), 777):  # arbitrary TCP segmentation
        got += reader.feed(wire[i:i + 777])
    assert [f.payload for f in got] == payloads
    # a fragmented server message is joined; a ping in between is delivered on its own
    frag = (wsframe._header(wsframe.OP_BINARY, 3, masked=False, fin=False) + b"abc"
            + wsframe.server_frame(b"p", wsframe.OP_PING)
            + wsframe._header(wsframe.OP_CONTINUATION, 2, masked=False) + b"de")
    frames = wsframe.FrameReader(expect_masked=False).feed(frag)
    assert [(f.opcode, f.payload) for f in frames] == [(wsframe.OP_PING, b"p"), (wsframe.OP_BINARY, b"abcde")]


def test_frame_reader_rejects_unmasked_client_frames_and_huge_frames():
    with pytest.raises(wsframe.FrameError, match="masked"):
        wsframe.FrameReader(expect_masked=True).feed(wsframe.server_frame(b"abc"))
    with pytest.raises(wsframe.FrameError, match="limit"):
        wsframe.FrameReader(expect_masked=False, max_message=10).feed(wsframe.server_frame(b"a" * 11))


def test_server_fast_path_decodes_exactly_what_the_general_decoder_accepts():
    from yapbench.server.audio_frames import MaskedAudioDecoder

    decoder = MaskedAudioDecoder()
    rng = np.random.default_rng(0)
    for n in (0, 1, 15, 16, 21, 22, 1920, 1921, 13100, 13200):
        for _ in range(3):  # a fresh mask key each time, as clients send them
            frame = wsframe.client_frame(P.encode_audio(rng.standard_normal(n).astype(np.float32)))
            payload = wsframe.FrameReader(expect_masked=True).feed(frame)[0].payload
            fast = decoder.decode(frame)
            if n < 22 or n > 13100:  # a fixarray header, or a frame length that is not 16-bit: the general way
                assert fast is None
            else:
                assert np.array_equal(fast, P.decode_client_message(payload).pcm)
    audio = bytearray(P.encode_audio(np.full(1920, 0.5, dtype=np.float32)))
    audio[19 + 5 * 7] = 0xCC  # one sample is not a float32: the general decoder decides
    others = [bytes(audio), msgpack.packb({"type": "Audxo", "pcm": [0.5] * 1920}, use_single_float=True),
              P.encode_marker(3), b"\x81\xa4type\xa4Init"]
    for payload in others:
        assert decoder.decode(wsframe.client_frame(payload)) is None
    one = wsframe.client_frame(P.encode_audio(np.full(1920, 0.25, dtype=np.float32)))
    two = one + wsframe.client_frame(P.encode_audio(np.full(1920, 0.5, dtype=np.float32)))
    assert decoder.decode(two)[0] == 0.25 and decoder.decode(two, len(one))[0] == 0.5  # frames sharing a read
    assert decoder.decode(two[:-1], len(one)) is None and decoder.decode(one[:-1]) is None  # cut off by the read

"""gdsl.music (piano rolls to MIDI) and gdsl.plot.piano_rolls."""
import numpy as np
import pytest

from gdsl import music

mido = pytest.importorskip("mido")


def test_held_keys_become_one_note_and_gaps_split_them():
    roll = np.zeros((6, 3))
    roll[0:3, 0] = 1  # held three frames
    roll[1, 2] = 1
    roll[4:6, 2] = 1  # a second note on the same key after a gap
    assert music.notes(roll, lowest=60) == [(60, 0, 3), (62, 1, 1), (62, 4, 2)]


def test_midi_file_holds_the_notes_at_the_right_times(tmp_path):
    roll = np.zeros((4, 88))
    roll[0:2, 39] = 1  # middle C (MIDI 60) for two frames
    roll[2, 43] = 1  # E (64) on the third frame
    path = tmp_path / "x.mid"
    assert music.to_midi(roll, path, bpm=120, ticks_per_frame=96) == 2
    f = mido.MidiFile(path)
    assert f.ticks_per_beat == 96
    now, on, spans = 0, {}, []
    for msg in f.tracks[0]:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            on[msg.note] = now
        elif msg.type in ("note_off", "note_on"):
            spans.append((msg.note, on.pop(msg.note), now))
    assert sorted(spans) == [(60, 0, 192), (64, 192, 288)]
    assert f.length == pytest.approx(1.5)  # three quarter notes at 120 bpm


def test_bad_rolls_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="frames, keys"):
        music.to_midi(np.zeros(5), tmp_path / "a.mid")
    with pytest.raises(ValueError, match="0 and 1"):
        music.to_midi(np.full((2, 3), 0.5), tmp_path / "a.mid")
    with pytest.raises(ValueError, match="MIDI pitches"):
        music.to_midi(np.zeros((2, 88)), tmp_path / "a.mid", lowest=60)


def test_piano_rolls_draws_one_panel_per_roll(tmp_path):
    pytest.importorskip("matplotlib")
    from gdsl import plot

    rolls = (np.random.default_rng(0).random((3, 10, 88)) < 0.05).astype(float)
    fig = plot.piano_rolls(rolls, path=tmp_path / "r.png", titles=["a", "b", "c"])
    assert len(fig.axes) == 3 and (tmp_path / "r.png").stat().st_size > 0
    with pytest.raises(ValueError, match="frames, keys"):
        plot.piano_rolls(np.zeros(5))

"""Listening to piano rolls: `to_midi(roll, path)` writes a binary piano roll as a MIDI file.

A roll is an array (frames, keys) of 0/1, as in ../shared/data/bach_chorales.npz and as the
sequence models (models/rnnrbm.gdl, models/rnn_nade.gdl) sample it: one frame per quarter
note, key k is MIDI pitch `lowest + k` (21 + k: the 88 keys of a piano). A key that is on in
consecutive frames is held as one note (the rolls cannot tell a held note from a repeated
one). Needs the optional extra `music` (mido): pip install 'gdsl[music]'.
"""
from __future__ import annotations

import numpy as np

NO_MIDO = "gdsl.music needs mido: pip install 'gdsl[music]' (or pip install mido)"


def notes(roll, lowest: int = 21) -> list[tuple[int, int, int]]:
    """(pitch, first frame, frames held) of every note of a binary roll (frames, keys)."""
    roll = np.asarray(roll)
    if roll.ndim != 2:
        raise ValueError(f"a piano roll is (frames, keys); got shape {roll.shape}")
    if not np.all((roll == 0) | (roll == 1)):
        raise ValueError("a piano roll holds 0 and 1 only")
    if lowest < 0 or lowest + roll.shape[1] > 128:
        raise ValueError(f"keys {lowest}..{lowest + roll.shape[1] - 1} are not all MIDI pitches (0..127)")
    out = []
    padded = np.vstack([np.zeros((1, roll.shape[1])), roll, np.zeros((1, roll.shape[1]))])
    change = np.diff(padded, axis=0)
    for key in range(roll.shape[1]):
        starts = np.nonzero(change[:, key] == 1)[0]
        ends = np.nonzero(change[:, key] == -1)[0]
        out += [(lowest + key, int(s), int(e - s)) for s, e in zip(starts, ends)]
    return sorted(out, key=lambda n: (n[1], n[0]))


def to_midi(roll, path, lowest: int = 21, bpm: float = 80.0, velocity: int = 80, program: int = 0,
            ticks_per_frame: int = 480) -> int:
    """Write `roll` (frames, keys) as a one-track MIDI file at `path`, each frame a quarter note
    at `bpm`; returns the number of notes written. `program` is the General MIDI instrument
    (0: acoustic grand piano; 19: church organ suits chorales)."""
    try:
        import mido
    except ImportError:
        raise ImportError(NO_MIDO) from None
    if not 0 <= int(velocity) <= 127 or not 0 <= int(program) <= 127:
        raise ValueError("velocity and program are MIDI values, 0..127")
    found = notes(roll, lowest)
    events = []
    for pitch, start, held in found:
        events.append((start * ticks_per_frame, 1, pitch))
        events.append(((start + held) * ticks_per_frame, 0, pitch))
    events.sort()  # at equal times, note-offs (0) before note-ons (1)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.Message("program_change", program=int(program), time=0))
    now = 0
    for tick, on, pitch in events:
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=int(velocity) if on else 0, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    f = mido.MidiFile(ticks_per_beat=ticks_per_frame)
    f.tracks.append(track)
    f.save(str(path))
    return len(found)

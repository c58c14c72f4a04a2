"""The toy world: determinism, ground truth consistent with the pixels, vocabulary errors."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import ConfigError
from bench.models.toy import tokenize
from bench.prompt_sets import load_prompt_set
from bench.world import (
    CANVAS_TILES,
    HELDOUT_PAIRS,
    SHAPE_MASKS,
    SPRITE_COLOURS,
    TILE,
    VIEW_TILES,
    parse_prompt,
    random_scene,
    simulate,
    switched,
    vocabulary,
)

PROMPT = "desert dots, red cross bouncing, white ring sliding, camera pans left"


def test_same_prompt_and_seed_same_video():
    a, b = simulate([(0, PROMPT)], 60, seed=5), simulate([(0, PROMPT)], 60, seed=5)
    c = simulate([(0, PROMPT)], 60, seed=6)
    assert a.frames.shape == (60, 3, 32, 32) and a.frames.dtype == np.float32
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.camera, b.camera)
    assert not np.array_equal(a.frames, c.frames)
    assert np.array_equal(simulate([(0, PROMPT)], 30, seed=5).frames, a.frames[:30])  # prefix


def test_ground_truth_matches_pixels():
    video = simulate([(0, PROMPT)], 120, seed=2)
    rows, cols = CANVAS_TILES
    for t in range(120):
        cam = video.camera[t]
        assert 0 <= cam <= cols - VIEW_TILES
        view = video.canvas[:, :, cam * TILE:(cam + VIEW_TILES) * TILE].copy()
        for (x, y, visible), colour, shape in zip(video.sprites[t], video.sprite_colours[t], video.sprite_shapes):
            assert visible == (cam <= x < cam + VIEW_TILES) and 0 <= y < rows
            if visible:
                tile = view[:, y * TILE:(y + 1) * TILE, (x - cam) * TILE:(x - cam + 1) * TILE]
                tile[:, SHAPE_MASKS[shape]] = np.array(SPRITE_COLOURS[colour])[:, None]
        np.testing.assert_array_equal(view, video.frames[t])


def test_camera_pans_one_tile_a_frame_and_comes_back():
    video = simulate([(0, PROMPT)], 240, seed=0)
    steps = np.diff(video.camera)
    assert set(np.abs(steps).tolist()) == {1}
    assert steps[0] == -1  # "pans left"
    returns = [t for t in range(1, 240) if video.camera[t] in video.camera[:t]]
    assert returns  # regions are revisited
    still = simulate([(0, PROMPT.replace("pans left", "still"))], 30, seed=0)
    assert (np.diff(still.camera) == 0).all()


def test_schedule_switch_keeps_the_scene():
    switch = PROMPT.replace("red cross", "yellow cross").replace("pans left", "still")
    video = simulate([(0, PROMPT), (12, switch)], 24, seed=1)
    assert video.sprite_colours[11][0] == "red" and video.sprite_colours[12][0] == "yellow"
    assert (np.diff(video.camera[12:]) == 0).all() and (np.abs(np.diff(video.camera[:12])) == 1).all()
    with pytest.raises(ConfigError, match="changes the scene"):
        simulate([(0, PROMPT), (12, PROMPT.replace("desert", "ocean"))], 24, seed=1)


@pytest.mark.parametrize("prompt, message", [
    ("desert plaid, red cross bouncing, camera still", "unknown pattern 'plaid'; allowed: blocks, stripes, dots, bricks"),
    ("desert dots, purple cross bouncing, camera still", "unknown colour 'purple'; allowed: red, yellow, magenta, cyan, white"),
    ("desert dots, red star bouncing, camera still", "unknown shape 'star'; allowed: square, cross, ring"),
    ("mars dots, red cross bouncing, camera still", "unknown palette 'mars'; allowed: forest, desert, ocean, city"),
    ("desert dots, red cross bouncing, camera zooms", "unknown camera motion 'zooms'; allowed: pans right, pans left, still"),
    ("desert dots, camera still", "3 or 4 comma-separated phrases"),
])
def test_vocabulary_errors(prompt, message):
    with pytest.raises(ConfigError, match=message):
        parse_prompt(prompt)


def test_prompt_sets_and_split():
    toy = load_prompt_set("toy")
    assert len(toy.prompts) >= 16
    for entry in toy.prompts:
        assert parse_prompt(entry.text).split == entry.split
    assert {e.split for e in toy.prompts} == {"train", "heldout"}
    multi = load_prompt_set("toy_multi")
    assert len(multi.prompts) >= 8
    for entry in multi.prompts:
        timeline = entry.timeline()
        assert len(timeline) == 6 and [at for at, _ in timeline] == [0, 10, 20, 30, 40, 50]
        simulate([(int(at * 4), p) for at, p in timeline], 240, seed=0)  # every switch is legal
    rng = np.random.default_rng(0)
    for _ in range(200):  # training never sees a held-out pair
        scene = random_scene(rng, "train")
        assert not any((scene.palette, s.colour) in HELDOUT_PAIRS for s in scene.sprites)
        assert parse_prompt(switched(scene, rng).text()).palette == scene.palette


def test_vocabulary_words_get_distinct_token_ids():
    ids = [int(tokenize(w, 1024, 2)[1]) for w in vocabulary()]
    assert len(set(ids)) == len(ids)

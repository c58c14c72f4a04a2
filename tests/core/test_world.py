"""The toy world: determinism, ground truth consistent with the pixels, vocabulary errors."""

from __future__ import annotations

import numpy as np
import pytest

from bench.prompt_sets import load_prompt_set
from core.errors import ConfigError
from core.toy_text import tokenize
from core.world import (
    CANVAS_WIDTHS,
    HELDOUT_PAIRS,
    PALETTES,
    SHAPE_MASKS,
    SPRITE_COLOURS,
    TILE,
    VIEW_TILES,
    layout,
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
    rows, width = 4, CANVAS_WIDTHS["dots"]
    assert video.width == width and video.canvas.shape == (3, 32, 8 * width)
    wrapped = np.concatenate([video.canvas, video.canvas], axis=2)
    for t in range(120):
        cam = video.camera[t]
        assert 0 <= cam < width
        view = wrapped[:, :, cam * TILE:(cam + VIEW_TILES) * TILE].copy()
        for (x, y, visible), colour, shape in zip(video.sprites[t], video.sprite_colours[t], video.sprite_shapes):
            col = (x - cam) % width
            assert visible == (col < VIEW_TILES) and 0 <= y < rows
            if visible:
                tile = view[:, y * TILE:(y + 1) * TILE, col * TILE:(col + 1) * TILE]
                tile[:, SHAPE_MASKS[shape]] = np.array(SPRITE_COLOURS[colour])[:, None]
        np.testing.assert_array_equal(view, video.frames[t])


def test_camera_wraps_around_and_the_view_returns_after_the_canvas_width():
    video = simulate([(0, PROMPT)], 240, seed=0)
    W = video.width
    assert ((video.camera[1:] - video.camera[:-1]) % W == W - 1).all()  # "pans left", one tile a frame
    assert (video.camera_step[1:] == -1).all() and video.camera_step[0] == 0
    np.testing.assert_array_equal(video.camera[W:], video.camera[:-W])
    # the background repeats exactly at lag W (sprites aside)
    sprite_free = ~np.any([np.all(video.frames == np.array(c, np.float32)[:, None, None], axis=1)
                           for c in SPRITE_COLOURS.values()], axis=0)
    both = sprite_free[W:] & sprite_free[:-W]
    assert np.abs(video.frames[W:] - video.frames[:-W]).max(axis=1)[both].max() == 0
    still = simulate([(0, PROMPT.replace("pans left", "still"))], 30, seed=0)
    assert (np.diff(still.camera) == 0).all() and (still.camera_step == 0).all()


@pytest.mark.parametrize("pattern, width", sorted(CANVAS_WIDTHS.items()))
def test_layout_is_drawn_per_seed_and_every_shift_changes_the_view(pattern, width):
    a, b = layout(pattern, 0), layout(pattern, 1)
    assert a.shape == (4, width) and not np.array_equal(a, b)
    assert set(np.unique(a)) <= {0, 1, 2, 3}
    assert (a[:, 1:] != a[:, :-1]).all()  # horizontal neighbours differ


def test_palette_colours_are_far_apart_and_far_from_sprite_colours():
    sprites = np.array(list(SPRITE_COLOURS.values()))
    for name, colours in PALETTES.items():
        c = np.array(colours)
        pair = np.abs(c[:, None] - c[None]).max(-1) + np.eye(len(c))
        assert pair.min() >= 0.25, name
        assert np.abs(c[:, None] - sprites[None]).max(-1).min() >= 0.25, name


def test_schedule_switch_keeps_the_scene():
    switch = PROMPT.replace("red cross", "yellow cross").replace("pans left", "still")
    video = simulate([(0, PROMPT), (12, switch)], 24, seed=1)
    assert video.sprite_colours[11][0] == "red" and video.sprite_colours[12][0] == "yellow"
    assert (video.camera_step[13:] == 0).all() and (video.camera_step[1:13] == -1).all()
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

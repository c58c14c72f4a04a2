"""The toy world: procedural videos with exact ground truth, chosen by a short prompt.

Everything is aligned to 8 x 8 pixel tiles (one tile = one patch of the toy backbone), so
motion happens in whole-token steps and copying from context is an exact token shift.

- Canvas: 4 x 24 tiles (32 x 192 px), larger than the 4 x 4 tile view (32 x 32 px). Its
  layout (which palette colour each tile gets) is fixed by the pattern word; a few
  *landmark* tiles (a 2 x 2-pixel checker) are placed by the seed. The layout can be
  learned from the prompt; landmarks can only be known from what was seen before, so
  revisiting a region tests memory.
- Camera: pans one tile a frame and bounces at the canvas ends (ping-pong), so regions
  are revisited both inside the 21-frame horizon (near a turn) and far beyond it (a full
  cycle is 40 frames); or stays still. Its start is set by the seed.
- Sprites: one or two, each with a fixed colour and shape, moving one tile a frame
  (bouncing vertically, sliding horizontally) or resting, in canvas coordinates: they
  leave the view when the camera pans away and come back.

Prompt grammar (comma-separated phrases)::

    <palette> <pattern>, <colour> <shape> <motion>[, <colour> <shape> <motion>], camera <pans left|pans right|still>

e.g. ``forest blocks, red cross bouncing, camera pans right``. Multi-prompt schedules
keep the scene (palette, pattern, sprite shapes) and may change the camera motion and
sprite colours or motions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bench.errors import ConfigError

TILE = 8
VIEW_TILES = 4
CANVAS_TILES = (4, 24)  # rows, columns
PALETTES = {
    "forest": [(0.10, 0.32, 0.12), (0.28, 0.58, 0.20), (0.58, 0.72, 0.28)],
    "desert": [(0.50, 0.34, 0.18), (0.78, 0.60, 0.36), (0.93, 0.82, 0.58)],
    "ocean": [(0.05, 0.10, 0.35), (0.16, 0.32, 0.62), (0.38, 0.52, 0.78)],
    "city": [(0.18, 0.18, 0.20), (0.40, 0.40, 0.44), (0.62, 0.62, 0.66)],
}
PATTERNS = ("blocks", "stripes", "dots", "bricks")
SPRITE_COLOURS = {
    "red": (0.95, 0.10, 0.10),
    "yellow": (1.00, 0.90, 0.10),
    "magenta": (0.90, 0.15, 0.85),
    "cyan": (0.10, 0.90, 0.95),
    "white": (1.00, 1.00, 1.00),
}
SHAPES = ("square", "cross", "ring")
MOTIONS = ("bouncing", "sliding", "resting")
CAMERAS = ("pans right", "pans left", "still")
LANDMARKS = 8  # landmark tiles per canvas

# (palette, sprite colour) pairs that training never sees: the held-out split.
HELDOUT_PAIRS = {("forest", "magenta"), ("desert", "cyan"), ("ocean", "yellow"), ("city", "red")}


def _shape_masks() -> dict[str, np.ndarray]:
    square = np.zeros((TILE, TILE), bool)
    square[1:7, 1:7] = True
    cross = np.zeros((TILE, TILE), bool)
    cross[3:5, :] = True
    cross[:, 3:5] = True
    ring = np.ones((TILE, TILE), bool)
    ring[2:6, 2:6] = False
    return {"square": square, "cross": cross, "ring": ring}


SHAPE_MASKS = _shape_masks()


@dataclass(frozen=True)
class SpriteSpec:
    colour: str
    shape: str
    motion: str


@dataclass(frozen=True)
class Scene:
    """A parsed prompt."""

    palette: str
    pattern: str
    sprites: tuple[SpriteSpec, ...]
    camera: str

    @property
    def split(self) -> str:
        heldout = any((self.palette, s.colour) in HELDOUT_PAIRS for s in self.sprites)
        return "heldout" if heldout else "train"

    def text(self) -> str:
        parts = [f"{self.palette} {self.pattern}"]
        parts += [f"{s.colour} {s.shape} {s.motion}" for s in self.sprites]
        return ", ".join(parts + [f"camera {self.camera}"])


def vocabulary() -> list[str]:
    words = [*PALETTES, *PATTERNS, *SPRITE_COLOURS, *SHAPES, *MOTIONS, "camera", "pans", "left", "right", "still"]
    return sorted(set(words))


def _pick(word: str, allowed, what: str, prompt: str) -> str:
    if word not in allowed:
        raise ConfigError(f"prompt {prompt!r}: unknown {what} {word!r}; allowed: {', '.join(allowed)}")
    return word


def parse_prompt(prompt: str) -> Scene:
    """Parse a prompt of the grammar above; an unknown word is a one-line error."""
    phrases = [p.split() for p in prompt.lower().split(",")]
    if len(phrases) < 3 or len(phrases) > 4:
        raise ConfigError(f"prompt {prompt!r}: expected '<palette> <pattern>, <colour> <shape> <motion>"
                          f"[, ...], camera <motion>' (3 or 4 comma-separated phrases)")
    background, *sprite_phrases, camera = phrases
    if len(background) != 2:
        raise ConfigError(f"prompt {prompt!r}: background phrase must be '<palette> <pattern>'")
    palette = _pick(background[0], list(PALETTES), "palette", prompt)
    pattern = _pick(background[1], PATTERNS, "pattern", prompt)
    sprites = []
    for words in sprite_phrases:
        if len(words) != 3:
            raise ConfigError(f"prompt {prompt!r}: sprite phrase must be '<colour> <shape> <motion>'")
        sprites.append(SpriteSpec(_pick(words[0], list(SPRITE_COLOURS), "colour", prompt),
                                  _pick(words[1], SHAPES, "shape", prompt),
                                  _pick(words[2], MOTIONS, "motion", prompt)))
    if not camera or camera[0] != "camera":
        raise ConfigError(f"prompt {prompt!r}: last phrase must be 'camera <{'|'.join(CAMERAS)}>'")
    cam = _pick(" ".join(camera[1:]), CAMERAS, "camera motion", prompt)
    return Scene(palette, pattern, tuple(sprites), cam)


def check_switch(before: Scene, after: Scene) -> None:
    """A prompt switch keeps the scene: palette, pattern, number and shapes of sprites."""
    same = (before.palette, before.pattern, [s.shape for s in before.sprites]) == (
        after.palette, after.pattern, [s.shape for s in after.sprites])
    if not same:
        raise ConfigError(f"prompt switch {before.text()!r} -> {after.text()!r} changes the scene; allowed "
                          f"changes: camera motion, sprite colours and sprite motions")


def layout(pattern: str) -> np.ndarray:
    """Palette slot (0..2) of every canvas tile, fixed by the pattern: [rows, cols] int."""
    rng = np.random.default_rng(1000 + PATTERNS.index(pattern))
    return rng.integers(0, 3, CANVAS_TILES)


def tile_pixels(pattern: str, slot: int, palette: list) -> np.ndarray:
    """One background tile [8, 8, 3]: colour ``slot`` textured by the pattern."""
    a, b, c = (np.array(palette[(slot + i) % 3], dtype=np.float32) for i in range(3))
    tile = np.broadcast_to(a, (TILE, TILE, 3)).copy()
    if pattern == "stripes":
        tile[TILE // 2:] = b
    elif pattern == "dots":
        tile[2:6, 2:6] = b
    elif pattern == "bricks":
        tile[0, :] = c
        tile[:, 0] = c
    return tile


def landmark_pixels(palette: list) -> np.ndarray:
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    checker = ((yy // 2 + xx // 2) % 2).astype(bool)
    return np.where(checker[..., None], np.array(palette[2], np.float32), np.array(palette[0], np.float32))


def render_canvas(scene: Scene, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(canvas [32, 192, 3] float32 in [0, 1], landmark mask [4, 24] bool)."""
    palette = PALETTES[scene.palette]
    slots = layout(scene.pattern)
    rng = np.random.default_rng([seed, 7])
    landmarks = np.zeros(CANVAS_TILES, bool)
    landmarks.flat[rng.choice(landmarks.size, LANDMARKS, replace=False)] = True
    rows, cols = CANVAS_TILES
    canvas = np.zeros((rows * TILE, cols * TILE, 3), np.float32)
    mark = landmark_pixels(palette)
    for r in range(rows):
        for c in range(cols):
            tile = mark if landmarks[r, c] else tile_pixels(scene.pattern, int(slots[r, c]), palette)
            canvas[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] = tile
    return canvas, landmarks


@dataclass
class WorldVideo:
    """A rendered video and its ground truth.

    frames: [T, 3, 32, 32] float32 in [0, 1]; canvas: [3, 32, 192]; landmarks: [4, 24];
    camera: [T] view offset in tiles (column of the canvas at the view's left edge);
    sprites: [T, S, 3] int (canvas column, row, visible); sprite_colours: [T, S] names;
    sprite_shapes: [S]; scenes: [T] index into ``prompts`` of the prompt active at frame t.
    """

    frames: np.ndarray
    canvas: np.ndarray
    landmarks: np.ndarray
    camera: np.ndarray
    sprites: np.ndarray
    sprite_colours: list[list[str]]
    sprite_shapes: list[str]
    palette: str
    scenes: np.ndarray
    prompts: list[str]


def _camera_velocity(camera: str) -> int:
    return {"pans right": 1, "pans left": -1, "still": 0}[camera]


def _bounce(pos: int, vel: int, lo: int, hi: int) -> tuple[int, int]:
    if not lo <= pos + vel <= hi:
        vel = -vel
    return pos + vel, vel


def simulate(timeline: list[tuple[int, str]], num_frames: int, seed: int) -> WorldVideo:
    """Render ``num_frames`` frames of a prompt schedule [(start frame, prompt)], starting at 0."""
    if not timeline or timeline[0][0] != 0:
        raise ConfigError(f"schedule {timeline!r}: the first prompt must start at frame 0")
    scenes = [parse_prompt(p) for _, p in timeline]
    for before, after in zip(scenes, scenes[1:]):
        check_switch(before, after)
    first = scenes[0]
    canvas, landmarks = render_canvas(first, seed)
    rng = np.random.default_rng([seed, 11])
    rows, cols = CANVAS_TILES
    max_cam = cols - VIEW_TILES
    cam, cam_vel = int(rng.integers(0, max_cam + 1)), _camera_velocity(first.camera)
    sprites = []  # [x, y, vx, vy]
    for spec in first.sprites:
        x, y = int(rng.integers(0, cols)), int(rng.integers(0, rows))
        sign = int(rng.choice([-1, 1]))
        vx, vy = {"bouncing": (0, sign), "sliding": (sign, 0), "resting": (0, 0)}[spec.motion]
        sprites.append([x, y, vx, vy])

    frames = np.zeros((num_frames, rows * TILE, VIEW_TILES * TILE, 3), np.float32)
    cam_track = np.zeros(num_frames, np.int64)
    sprite_track = np.zeros((num_frames, len(sprites), 3), np.int64)
    colours, scene_index = [], np.zeros(num_frames, np.int64)
    active = 0
    for t in range(num_frames):
        while active + 1 < len(timeline) and timeline[active + 1][0] <= t:
            active += 1
            scene = scenes[active]
            cam_vel = _camera_velocity(scene.camera)
            for s, spec in zip(sprites, scene.sprites):
                speed = {"bouncing": (0, 1), "sliding": (1, 0), "resting": (0, 0)}[spec.motion]
                sign = 1 if (s[2] + s[3]) >= 0 else -1
                s[2], s[3] = speed[0] * sign, speed[1] * sign
        scene = scenes[active]
        scene_index[t] = active
        view = canvas[:, cam * TILE:(cam + VIEW_TILES) * TILE].copy()
        for i, ((x, y, _, _), spec) in enumerate(zip(sprites, scene.sprites)):
            visible = cam <= x < cam + VIEW_TILES
            if visible:
                patch = view[y * TILE:(y + 1) * TILE, (x - cam) * TILE:(x - cam + 1) * TILE]
                patch[SHAPE_MASKS[spec.shape]] = SPRITE_COLOURS[spec.colour]
            sprite_track[t, i] = (x, y, visible)
        colours.append([spec.colour for spec in scene.sprites])
        frames[t], cam_track[t] = view, cam
        cam, cam_vel = _bounce(cam, cam_vel, 0, max_cam)
        for s in sprites:
            s[0], s[2] = _bounce(s[0], s[2], 0, cols - 1)
            s[1], s[3] = _bounce(s[1], s[3], 0, rows - 1)
    return WorldVideo(
        frames=frames.transpose(0, 3, 1, 2).copy(), canvas=canvas.transpose(2, 0, 1).copy(),
        landmarks=landmarks, camera=cam_track, sprites=sprite_track, sprite_colours=colours,
        sprite_shapes=[s.shape for s in first.sprites], palette=first.palette, scenes=scene_index,
        prompts=[p for _, p in timeline],
    )


def random_scene(rng: np.random.Generator, split: str = "train") -> Scene:
    """A random prompt of the given split ('train' never contains a held-out pair)."""
    while True:
        palette = str(rng.choice(list(PALETTES)))
        n = int(rng.integers(1, 3))
        colours = rng.choice(list(SPRITE_COLOURS), n, replace=False)
        sprites = tuple(SpriteSpec(str(c), str(rng.choice(SHAPES)), str(rng.choice(MOTIONS))) for c in colours)
        scene = Scene(palette, str(rng.choice(PATTERNS)), sprites, str(rng.choice(CAMERAS)))
        if scene.split == split:
            return scene


def switched(scene: Scene, rng: np.random.Generator) -> Scene:
    """The same scene with a new camera motion or a new colour for one sprite."""
    if rng.random() < 0.5:
        return replace(scene, camera=str(rng.choice([c for c in CAMERAS if c != scene.camera])))
    i = int(rng.integers(len(scene.sprites)))
    used = {s.colour for s in scene.sprites}
    colour = str(rng.choice([c for c in SPRITE_COLOURS if c not in used]))
    sprites = list(scene.sprites)
    sprites[i] = replace(sprites[i], colour=colour)
    return replace(scene, sprites=tuple(sprites))

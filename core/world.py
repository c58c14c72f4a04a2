"""The toy world: procedural videos with exact ground truth, chosen by a short prompt.

Everything is aligned to 8 x 8 pixel tiles (one tile = one patch of the toy backbone), so
motion happens in whole-token steps and copying from context is an exact token shift.
The world is built so that the *context is the only way to know what comes next*: a
model can render a valid tile from the prompt, but which tile sits where is known only
from frames it has seen.

- Canvas: 4 rows x W columns of tiles that wraps around horizontally. W is set by the
  pattern word (``CANVAS_WIDTHS``: 8, 12, 16 or 18 tiles). Each tile's palette colour
  (4 high-contrast colours per palette) is drawn per *seed*, so the layout cannot be
  learned from the prompt; the pattern word sets the tile texture and the width.
- Camera: pans one tile a frame in the prompted direction and wraps around, so the view
  of frame t returns exactly at frame t + W (revisits at lags 8-18 frames: inside the
  21-frame trained horizon, so retrieval can be learned, and for W = 18 beyond a
  16-frame window, so memory matters); or stays still. Its start is set by the seed.
- Sprites: one or two, each with a fixed colour and shape, moving one tile a frame
  (bouncing vertically, sliding horizontally with wrap-around) or resting, in canvas
  coordinates: they leave the view when the camera pans away and come back.

Prompt grammar (comma-separated phrases)::

    <palette> <pattern>, <colour> <shape> <motion>[, <colour> <shape> <motion>], camera <pans left|pans right|still>

e.g. ``forest blocks, red cross bouncing, camera pans right``. Multi-prompt schedules
keep the scene (palette, pattern, sprite shapes) and may change the camera motion and
sprite colours or motions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from core.errors import ConfigError

TILE = 8
VIEW_TILES = 4
CANVAS_ROWS = 4
# Canvas width in tiles per pattern word: the lag (frames) at which a panning view returns.
CANVAS_WIDTHS = {"blocks": 8, "stripes": 12, "dots": 16, "bricks": 18}
# Four well-separated colours per palette (L-inf distance >= 0.25 between any two, and
# >= 0.25 from every sprite colour), so a tile in the wrong place costs a large error.
PALETTES = {
    "forest": [(0.06, 0.22, 0.08), (0.30, 0.62, 0.22), (0.58, 0.40, 0.12), (0.70, 0.75, 0.45)],
    "desert": [(0.30, 0.18, 0.08), (0.75, 0.55, 0.28), (0.45, 0.40, 0.60), (0.72, 0.75, 0.62)],
    "ocean": [(0.03, 0.08, 0.30), (0.18, 0.38, 0.70), (0.05, 0.50, 0.40), (0.55, 0.62, 0.75)],
    "city": [(0.10, 0.10, 0.12), (0.42, 0.42, 0.46), (0.70, 0.70, 0.72), (0.40, 0.22, 0.12)],
}
PATTERNS = tuple(CANVAS_WIDTHS)
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

# "Another seed of the same prompt" (a wrong context of the same scene) is the world of seed + this.
OTHER_SEED_OFFSET = 10_007

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


def canvas_tiles(pattern: str) -> tuple[int, int]:
    """(rows, columns) of the canvas for a pattern word."""
    return CANVAS_ROWS, CANVAS_WIDTHS[pattern]


def layout(pattern: str, seed: int) -> np.ndarray:
    """Palette slot (0..3) of every canvas tile, drawn per seed: [rows, cols] int.

    Horizontally adjacent tiles differ, so every one-tile shift of the view changes it."""
    rows, cols = canvas_tiles(pattern)
    rng = np.random.default_rng([seed, 7])
    slots = rng.integers(0, 4, (rows, cols))
    for c in range(1, cols):
        same = slots[:, c] == slots[:, c - 1]
        slots[same, c] = (slots[same, c] + rng.integers(1, 4, int(same.sum()))) % 4
    return slots


def tile_pixels(pattern: str, slot: int, palette: list) -> np.ndarray:
    """One background tile [8, 8, 3]: colour ``slot`` textured by the pattern (second
    colour: the next slot)."""
    a, b = (np.array(palette[(slot + i) % len(palette)], dtype=np.float32) for i in range(2))
    tile = np.broadcast_to(a, (TILE, TILE, 3)).copy()
    if pattern == "stripes":
        tile[TILE // 2:] = b
    elif pattern == "dots":
        tile[2:6, 2:6] = b
    elif pattern == "bricks":
        tile[0, :] = b
        tile[:, 0] = b
    return tile


def valid_tiles(scene: Scene) -> np.ndarray:
    """Every background tile the scene's palette and pattern can draw: [slots, 3, 8, 8]."""
    palette = PALETTES[scene.palette]
    return np.stack([tile_pixels(scene.pattern, s, palette).transpose(2, 0, 1) for s in range(len(palette))])


def render_canvas(scene: Scene, seed: int) -> np.ndarray:
    """The canvas [rows * 8, cols * 8, 3] float32 in [0, 1] of a scene and seed."""
    palette = PALETTES[scene.palette]
    slots = layout(scene.pattern, seed)
    rows, cols = slots.shape
    canvas = np.zeros((rows * TILE, cols * TILE, 3), np.float32)
    for r in range(rows):
        for c in range(cols):
            canvas[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] = tile_pixels(scene.pattern, int(slots[r, c]), palette)
    return canvas


def view_columns(cam: int, width: int) -> np.ndarray:
    """Canvas tile columns shown by a view whose left edge is at ``cam`` (wraps around)."""
    return (cam + np.arange(VIEW_TILES)) % width


@dataclass
class WorldVideo:
    """A rendered video and its ground truth.

    frames: [T, 3, 32, 32] float32 in [0, 1]; canvas: [3, 32, 8 W] (W = canvas width in
    tiles, wrapping around); camera: [T] view offset in tiles (canvas column at the view's
    left edge, 0..W-1); camera_step: [T] tiles moved from frame t-1 to t (-1, 0, 1; 0 at
    t = 0); sprites: [T, S, 3] int (canvas column, row, visible); sprite_colours: [T, S]
    names; sprite_shapes: [S]; scenes: [T] index into ``prompts`` of the prompt active at
    frame t; tiles: [slots, 3, 8, 8] every background tile the scene can draw.
    """

    frames: np.ndarray
    canvas: np.ndarray
    camera: np.ndarray
    camera_step: np.ndarray
    sprites: np.ndarray
    sprite_colours: list[list[str]]
    sprite_shapes: list[str]
    palette: str
    scenes: np.ndarray
    prompts: list[str]
    tiles: np.ndarray

    @property
    def width(self) -> int:
        """Canvas width in tiles: a panning view returns after this many frames."""
        return self.canvas.shape[2] // TILE


def _camera_velocity(camera: str) -> int:
    return {"pans right": 1, "pans left": -1, "still": 0}[camera]


def _sprite_velocity(motion: str, sign: int) -> tuple[int, int]:
    return {"bouncing": (0, sign), "sliding": (sign, 0), "resting": (0, 0)}[motion]


def simulate(timeline: list[tuple[int, str]], num_frames: int, seed: int) -> WorldVideo:
    """Render ``num_frames`` frames of a prompt schedule [(start frame, prompt)], starting at 0."""
    if not timeline or timeline[0][0] != 0:
        raise ConfigError(f"schedule {timeline!r}: the first prompt must start at frame 0")
    scenes = [parse_prompt(p) for _, p in timeline]
    for before, after in zip(scenes, scenes[1:]):
        check_switch(before, after)
    first = scenes[0]
    canvas = render_canvas(first, seed)
    rows, cols = canvas_tiles(first.pattern)
    rng = np.random.default_rng([seed, 11])
    cam, cam_vel = int(rng.integers(0, cols)), _camera_velocity(first.camera)
    sprites = []  # [x, y, vx, vy]
    for spec in first.sprites:
        x, y = int(rng.integers(0, cols)), int(rng.integers(0, rows))
        sprites.append([x, y, *_sprite_velocity(spec.motion, int(rng.choice([-1, 1])))])

    frames = np.zeros((num_frames, rows * TILE, VIEW_TILES * TILE, 3), np.float32)
    cam_track, cam_steps = np.zeros(num_frames, np.int64), np.zeros(num_frames, np.int64)
    sprite_track = np.zeros((num_frames, len(sprites), 3), np.int64)
    colours, scene_index = [], np.zeros(num_frames, np.int64)
    wide = np.concatenate([canvas, canvas[:, :VIEW_TILES * TILE]], axis=1)  # the wrap, unrolled
    active = 0
    for t in range(num_frames):
        while active + 1 < len(timeline) and timeline[active + 1][0] <= t:
            active += 1
            scene = scenes[active]
            cam_vel = _camera_velocity(scene.camera)
            for s, spec in zip(sprites, scene.sprites):
                sign = 1 if (s[2] + s[3]) >= 0 else -1
                s[2], s[3] = _sprite_velocity(spec.motion, sign)
        scene = scenes[active]
        scene_index[t] = active
        view = wide[:, cam * TILE:(cam + VIEW_TILES) * TILE].copy()
        for i, ((x, y, _, _), spec) in enumerate(zip(sprites, scene.sprites)):
            col = (x - cam) % cols
            visible = col < VIEW_TILES
            if visible:
                patch = view[y * TILE:(y + 1) * TILE, col * TILE:(col + 1) * TILE]
                patch[SHAPE_MASKS[spec.shape]] = SPRITE_COLOURS[spec.colour]
            sprite_track[t, i] = (x, y, visible)
        colours.append([spec.colour for spec in scene.sprites])
        frames[t], cam_track[t] = view, cam
        if t + 1 < num_frames:
            cam_steps[t + 1] = cam_vel
        cam = (cam + cam_vel) % cols
        for s in sprites:
            s[0] = (s[0] + s[2]) % cols
            if not 0 <= s[1] + s[3] <= rows - 1:
                s[3] = -s[3]
            s[1] += s[3]
    return WorldVideo(
        frames=frames.transpose(0, 3, 1, 2).copy(), canvas=canvas.transpose(2, 0, 1).copy(),
        camera=cam_track, camera_step=cam_steps, sprites=sprite_track, sprite_colours=colours,
        sprite_shapes=[s.shape for s in first.sprites], palette=first.palette, scenes=scene_index,
        prompts=[p for _, p in timeline], tiles=valid_tiles(first),
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

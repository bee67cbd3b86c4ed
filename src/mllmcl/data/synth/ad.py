"""AD — synthetic autonomous driving, imitating DriveLM (nuScenes key frames with perception,
prediction and planning questions about the ego car; scored by the "ai2d rule", so a multi-word
reference must appear verbatim in the prediction: answers are exact sentences from small sets).

DriveLM tiles the six camera views into one image; at 48 px a sixth of the image would be 16×24 px, too
small for anything but colour blobs, so the stand-in draws the single front view (documented deviation).
The view is a perspective road: sky (day blue, overcast grey, night navy) over a horizon,
roadside ground (grass, dirt, pavement), a grey road narrowing towards a vanishing point with lane
markings, distant traffic in the neighbouring lanes, and what the question is about: a vehicle close
ahead in the ego lane and/or a traffic light hanging over the road, glowing in the haze and reflected on
the asphalt.

Question families (`extra["question_type"]`, balanced closed answers):
  object      "Is there a vehicle ahead of the ego car?"        -> Yes / No
  signal      "What is the state of the traffic light?"         -> red / yellow / green
  planning    "What should the ego vehicle do?"                  -> "The ego vehicle should stop." (red light) /
              "The ego vehicle should slow down." (a vehicle close ahead) /
              "The ego vehicle should keep going straight." (green light, clear road)

Learnability (why the drawer draws what it does; `python bench/calibrate.py` measures each task's difficulty):
within an expert's short budget the tiny model learns cues that fill a good part of the view, not a small
lamp, a distant car or the side a pedestrian is on (so there is no pedestrian "position" family). It learns
colours, not shapes: a large car ahead in a common car colour (white, beige, blue, teal) does not tell it that
a vehicle is ahead, and without a colour of its own the planning family is answered from the lamp colour
alone. So vehicles are drawn in a magenta-violet palette that no other element of a road scene uses, the car
ahead is close (a car or a taller van), the signal head has a large lit lamp, a wide glow and a reflection on
the road, and the object question is asked on views without a signal.

Shared formats (`overlap`, see `mllmcl.data.synth.shared`), asked as DriveLM mixes perception, multiple
choice and planning (yes/no 30%, letters 30%, short answers 40%): the generic yes/no question means "is there
a vehicle close ahead?" (the object drawing, no signal), the generic letter question the signal, A red / B
yellow / C green / D no traffic light at all, the generic short-answer question the planned action (the
planning drawing and sentences). Under the shared look (`visual_overlap`) the sky and the
roadside take neutral tones from the shared pool; the road, the lamps and the vehicles keep their colours.
"""
from __future__ import annotations

import random

from mllmcl.data.synth.base import SynthItem, jitter, letters, register
from mllmcl.data.synth.draw import NO, OWN_LOOK, YES, Canvas, Look, mix, shade

SKIES = ((110, 165, 225), (150, 190, 230), (170, 175, 185), (40, 50, 90), (200, 200, 205), (60, 70, 100))
GROUNDS = ((90, 140, 70), (140, 120, 90), (160, 160, 155), (110, 120, 80), (190, 180, 150))
ROADS = ((95, 95, 100), (120, 120, 118), (75, 75, 80), (140, 135, 130))
CAR_COLOURS = ((150, 60, 190), (190, 50, 150), (120, 70, 200), (205, 80, 175))  # magenta-violet: no other element
LAMPS = {"red": (245, 40, 30), "yellow": (250, 200, 20), "green": (40, 220, 90)}
ACTIONS = {"stop": "The ego vehicle should stop.", "slow": "The ego vehicle should slow down.",
           "go": "The ego vehicle should keep going straight."}

OBJECT_Q = ("Is there a vehicle ahead of the ego car?", "Is there a car in front of the ego vehicle?")
SIGNAL_Q = ("What is the state of the traffic light?", "What color is the traffic signal ahead?")
PLAN_Q = ("What should the ego vehicle do?", "What is the safe action for the ego vehicle?")
FAMILIES = ("object", "signal", "planning")
FORMATS = {"object": "yesno", "signal": "text", "planning": "text"}
MIX = {"yesno": 0.3, "letter": 0.3, "text": 0.4}
HORIZON = (0.36, 0.46)


class Street:
    """The front view: sky, ground and a road converging to a vanishing point near the horizon."""

    def __init__(self, rng: random.Random, size: int, look: Look = OWN_LOOK):
        self.rng = rng
        self.sky = look.pick(rng, SKIES, "light", 14)
        self.horizon = rng.uniform(*HORIZON)
        self.vx = rng.uniform(0.4, 0.6)  # vanishing point, x
        self.canvas = c = Canvas(size, self.sky)
        h = self.horizon
        c.rect(0, h * 0.55, 1, h, fill=mix(self.sky, (255, 255, 255), rng.uniform(0.1, 0.3)))  # haze
        ground = look.pick(rng, GROUNDS, "ground", 15)
        c.rect(0, h, 1, 1, fill=ground)
        self.road = road = jitter(rng, rng.choice(ROADS), 10)
        half = rng.uniform(0.5, 0.65)  # road half-width at the bottom edge
        c.polygon([(self.vx - 0.02, h), (self.vx + 0.02, h), (0.5 + half, 1.0), (0.5 - half, 1.0)], fill=road)
        paint = (235, 235, 225) if rng.random() < 0.7 else (240, 200, 60)
        for side in (-1, 1):  # lane lines between the ego lane and its neighbours
            x_bottom = 0.5 + side * half * 0.38
            for k in range(4):
                t0, t1 = 0.15 + k * 0.22, 0.15 + k * 0.22 + 0.12
                c.line([(self.vx + (x_bottom - self.vx) * t0, h + (1 - h) * t0),
                        (self.vx + (x_bottom - self.vx) * t1, h + (1 - h) * t1)], paint, 0.012 + 0.012 * t1)

    def vehicle(self, near: bool, lane: int = 0) -> None:
        """A vehicle from behind, in the ego lane (lane 0) or a neighbouring one, close or far away."""
        rng, c = self.rng, self.canvas
        t = rng.uniform(0.9, 1.0) if near else rng.uniform(0.12, 0.2)  # depth along the road (1 = at the camera)
        y = self.horizon + (1 - self.horizon) * t
        x = self.vx + (0.5 + lane * 0.75 - self.vx) * t
        w = (0.7 if near else 0.55) * t
        body = jitter(rng, rng.choice(CAR_COLOURS), 12)
        tall = 0.75 if rng.random() < 0.6 else 1.1  # car, or van / bus
        c.rect(x - w / 2, y - w * tall, x + w / 2, y, fill=body)
        c.rect(x - w * 0.38, y - w * 0.7, x + w * 0.38, y - w * 0.42, fill=shade(body, 0.45))  # rear window
        for side in (-1, 1):
            c.rect(x + side * w * 0.42 - w * 0.07, y - w * 0.3, x + side * w * 0.42 + w * 0.07, y - w * 0.2,
                   fill=(200, 30, 30))  # tail lights
        c.rect(x - w / 2, y, x + w / 2, y + w * 0.08, fill=(25, 25, 25))  # tyres / shadow

    def traffic_light(self, state: str) -> None:
        """A signal head hanging over the road, its `state` lamp lit with a wide glow in the haze and a
        coloured reflection on the asphalt; the other lamps dark. Drawn before any vehicle."""
        rng, c = self.rng, self.canvas
        x, top = rng.uniform(0.3, 0.7), rng.uniform(0.03, 0.06)
        lamp = jitter(rng, LAMPS[state], 10)
        k_lit = list(LAMPS).index(state)
        c.polygon([(x - 0.12, self.horizon), (x + 0.12, self.horizon), (x + 0.3, 1.0), (x - 0.3, 1.0)],
                  fill=mix(self.road, lamp, 0.4))  # reflection
        c.ellipse(x, top + 0.1 + k_lit * 0.16, 0.34, fill=mix(self.sky, lamp, 0.65))  # glow
        c.line([(-0.05, top + 0.02), (1.05, top + 0.02)], (55, 55, 55), 0.02)  # gantry wire
        c.rect(x - 0.1, top, x + 0.1, top + 0.48, fill=(30, 30, 30))
        for k, name in enumerate(LAMPS):
            c.ellipse(x, top + 0.08 + k * 0.16, 0.09 if k == k_lit else 0.06, fill=lamp if k == k_lit else (70, 70, 70))


SIGNALS = (*LAMPS, "none")
"""The shared letter options A-D of AD: the lamp that is lit, or no signal in view."""


def _planning(street: Street, rng: random.Random) -> str:
    """Draw what decides the action (a red light, a vehicle close ahead, or a green light on a clear road)
    and return the action's sentence."""
    action = rng.choice(list(ACTIONS))
    if action == "slow":
        street.vehicle(near=True)
    else:
        street.traffic_light("red" if action == "stop" else "green")
    return ACTIONS[action]


def shared(rng: random.Random, family: str, size: int, look: Look) -> SynthItem:
    """AD's rule for a shared-format question (see the module doc); the question is the shared one."""
    street = Street(rng, size, look)
    if family == "yesno":  # a vehicle close ahead?
        answer = rng.choice((YES, NO))
        if answer == YES:
            street.vehicle(near=True)
    elif family == "letter":  # the signal
        signal = rng.choice(SIGNALS)
        if signal != "none":
            street.traffic_light(signal)
        answer = letters(4)[SIGNALS.index(signal)]
    else:  # short answer: the action
        answer = _planning(street, rng)
    if rng.random() < 0.4:  # distant traffic in a neighbouring lane is never the answer
        street.vehicle(near=False, lane=rng.choice((-1, 1)))
    return SynthItem(street.canvas.finish(), "", answer)


@register("AD", "dcl", shared=shared, mix=MIX, formats=FORMATS)
def draw(rng: random.Random, split: str, size: int = 48, look: Look = OWN_LOOK) -> SynthItem:
    """A forward camera view with DriveLM-style perception and planning questions."""
    family = rng.choice(FAMILIES)
    street = Street(rng, size, look)
    if family == "object":
        answer = rng.choice((YES, NO))
        if answer == YES:
            street.vehicle(near=True)
        question = rng.choice(OBJECT_Q)
    elif family == "signal":
        answer = rng.choice(list(LAMPS))
        street.traffic_light(answer)
        question = rng.choice(SIGNAL_Q)
    else:
        answer, question = _planning(street, rng), rng.choice(PLAN_Q)
    if rng.random() < 0.4:  # distant traffic in a neighbouring lane is never the answer
        street.vehicle(near=False, lane=rng.choice((-1, 1)))
    return SynthItem(street.canvas.finish(), question, answer, {"question_type": family})

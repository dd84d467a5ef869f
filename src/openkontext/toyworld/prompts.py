"""Instruction templates: several paraphrases per edit family, split into training and held-out phrasings.

Every fourth phrasing of a family (index % 4 == 3) is held out (see ``split``); each family has at least four.
"""

from __future__ import annotations

import random

from .split import is_heldout_phrasing

TEMPLATES: dict[str, list[str]] = {
    # ---- local
    "recolor_object": [
        "Make the {obj} {color}.", "Change the color of the {obj} to {color}.", "Paint the {obj} {color}.",
        "Turn the {obj} {color}.", "Recolor the {obj} so that it is {color}.", "Can you make the {obj} {color}?",
        "The {obj} should be {color}.", "Give the {obj} a {color} color.",
    ],
    "add_object": [
        "Add a {new} {where}.", "Put a {new} {where}.", "Place a {new} {where}.", "Draw a {new} {where}.",
        "Insert a {new} {where}.", "There should be a {new} {where}.", "Include a {new} {where}.",
        "Add one {new} {where}.",
    ],
    "remove_object": [
        "Remove the {obj}.", "Delete the {obj}.", "Take away the {obj}.", "Get rid of the {obj}.",
        "Erase the {obj} from the picture.", "Make the {obj} disappear.", "Remove the {obj} from the scene.",
        "Take the {obj} out of the picture.",
    ],
    "replace_object": [
        "Replace the {obj} with a {new}.", "Swap the {obj} for a {new}.", "Turn the {obj} into a {new}.",
        "Change the {obj} into a {new}.", "Put a {new} where the {obj} is.", "Exchange the {obj} for a {new}.",
        "Make the {obj} a {new} instead.", "Substitute a {new} for the {obj}.",
    ],
    "move_object": [
        "Move the {obj} {to}.", "Shift the {obj} {to}.", "Put the {obj} {to}.", "Slide the {obj} {to}.",
        "Relocate the {obj} {to}.", "Place the {obj} {to} instead.", "Drag the {obj} {to}.",
        "Reposition the {obj} {to}.",
    ],
    "resize_object": [
        "Make the {obj} {scale}.", "Resize the {obj} to {scale}.", "Scale the {obj} to {scale}.",
        "The {obj} should be {scale}.", "Change the size of the {obj} to {scale}.", "Make the {obj} {scale}, please.",
        "Rescale the {obj} to {scale}.", "I want the {obj} {scale}.",
    ],
    "add_accessory": [
        "Give the {char} a {acc}.", "Put a {acc} on the {char}.", "Add a {acc} to the {char}.",
        "Let the {char} wear a {acc}.", "Dress the {char} with a {acc}.", "The {char} should wear a {acc}.",
        "Add a {acc} for the {char}.", "Make the {char} wear a {acc}.",
    ],
    "remove_accessory": [
        "Remove the {acc} from the {char}.", "Take off the {char}'s {acc}.", "Take the {acc} off the {char}.",
        "The {char} should not wear the {acc}.", "Remove the {char}'s {acc}.", "Get rid of the {char}'s {acc}.",
        "Let the {char} take off the {acc}.", "Without the {acc} on the {char}.",
    ],
    # ---- global
    "change_scene": [
        "Change the background to {scene_a}.", "Put them {scene_in}.", "Move everything {scene_in}.",
        "Make it take place {scene_in}.", "Replace the background with {scene_a}.", "Set this scene {scene_in}.",
        "Keep the subjects but put them {scene_in}.", "Switch the setting to {scene_a}.",
    ],
    "change_time": [
        "Make it {time}.", "Change the time of day to {time}.", "Show the same scene {time_at}.",
        "Turn it into {time}.", "Set the scene {time_at}.", "Make this happen {time_at}.",
        "Change it to {time}.", "Now show it {time_at}.",
    ],
    "change_weather": [
        "Make the weather {weather}.", "Change the weather to {weather}.", "Make it {weather}.",
        "Let the weather turn {weather}.", "Switch to {weather} weather.", "Show the scene in {weather} weather.",
        "The weather should be {weather}.", "Give it {weather} weather.",
    ],
    # ---- character reference
    "character_reference": [
        "Put this character {scene_in}, {where}, {size}{facing}.",
        "Show this character {scene_in}, {where}, {size}{facing}.",
        "Place the same character {scene_in}, {where}, {size}{facing}.",
        "Draw this creature {scene_in}, {where}, {size}{facing}.",
        "The same character, now {scene_in}, {where}, {size}{facing}.",
        "Make a picture of this character {scene_in}, {where}, {size}{facing}.",
        "Take this creature and put it {scene_in}, {where}, {size}{facing}.",
        "This character {scene_in}, {where}, {size}{facing}, please.",
    ],
    # ---- style (one family per style)
    "style_brick": [
        "Convert this to a Lego scene.", "Make it look like it is built from Lego bricks.",
        "Turn this into a brick model.", "Rebuild this scene out of toy bricks.", "Make it out of Lego.",
        "Render this as a Lego brick mosaic.", "Recreate this picture with building bricks.",
        "Transform it into a Lego build.",
    ],
    "style_pencil": [
        "Make it a pencil sketch.", "Turn this into a pencil drawing.", "Redraw this as a graphite sketch.",
        "Convert it to a pencil sketch.", "Make this look hand-drawn in pencil.", "Sketch this scene in pencil.",
        "Render it as a black and white pencil sketch.", "Draw this with a pencil on paper.",
    ],
    "style_pixel": [
        "Turn this into pixel art.", "Make it pixel art.", "Convert this to a retro pixel-art image.",
        "Render it as 8-bit pixel art.", "Make this look like a pixel-art game.", "Pixelate it into retro art.",
        "Redraw this in a pixel-art style.", "Turn it into a sprite-style pixel image.",
    ],
    "style_embroidery": [
        "Create a woven patch from it.", "Turn this into an embroidered patch.", "Make it an embroidery.",
        "Convert it into a stitched patch.", "Make this look like a sewn badge.", "Embroider this scene on fabric.",
        "Turn it into a woven badge on denim.", "Render it as a stitched embroidery patch.",
    ],
    "style_watercolor": [
        "Paint this as a watercolor.", "Make it a watercolor painting.", "Turn this into a watercolor.",
        "Convert it to a soft watercolor painting.", "Redo this in watercolor.", "Make it look painted in watercolor.",
        "Render this scene as a watercolor.", "Watercolor version of this, please.",
    ],
    "style_oil": [
        "Make it an oil painting.", "Paint this in oil with visible brush strokes.", "Turn it into an oil painting.",
        "Convert this to an impasto oil painting.", "Render it as a painting with thick brush strokes.",
        "Redo this as an oil painting.", "Make it look painted with a brush in oils.", "Oil painting of this scene.",
    ],
    # ---- text
    "replace_text": [
        "Change '{old}' to '{new}'.", 'Replace the word "{old}" with "{new}".',
        "Make the {carrier} say '{new}' instead of '{old}'.", "Change the text '{old}' to '{new}'.",
        "Rewrite '{old}' as '{new}'.", 'Edit the {carrier} so it reads "{new}" instead of "{old}".',
        "Swap the word '{old}' for '{new}'.", "Replace '{old}' with '{new}' in the same font.",
    ],
    "add_text": [
        "Write '{new}' on the {carrier}.", 'Add the word "{new}" to the {carrier}.',
        "Put the text '{new}' on the {carrier}.", "Make the blank {carrier} say '{new}'.",
        "Letter '{new}' onto the {carrier}.", 'Print "{new}" on the {carrier}.',
        "Add text that reads '{new}' to the {carrier}.", "Label the {carrier} with '{new}'.",
    ],
    "remove_text": [
        "Remove the text '{old}'.", 'Erase the word "{old}" from the {carrier}.', "Delete '{old}' from the {carrier}.",
        "Remove the writing from the {carrier}.", "Make the {carrier} blank.", "Wipe '{old}' off the {carrier}.",
        "Clear the text on the {carrier}.", "Take the word '{old}' off the {carrier}.",
    ],
    # ---- text to image
    "text_to_image": [
        "Make an image of {subjects} {scene_in}{time_weather}.", "A picture of {subjects} {scene_in}{time_weather}.",
        "Draw {subjects} {scene_in}{time_weather}.", "An illustration of {subjects} {scene_in}{time_weather}.",
        "Generate an image of {subjects} {scene_in}{time_weather}.", "Show {subjects} {scene_in}{time_weather}.",
        "Cartoon of {subjects} {scene_in}{time_weather}.", "Create a scene with {subjects} {scene_in}{time_weather}.",
    ],
}

SCENE_A = {"meadow": "a meadow", "beach": "a beach", "forest": "a forest", "city": "a city street", "room": "a room",
           "desert": "a desert", "snowfield": "a snowy field", "mountains": "the mountains"}
SCENE_IN = {"meadow": "in a meadow", "beach": "on a beach", "forest": "in a forest", "city": "in a city street",
            "room": "in a room", "desert": "in a desert", "snowfield": "on a snowy field",
            "mountains": "in the mountains"}
TIME_WORD = {"day": "daytime", "sunset": "sunset", "night": "night"}
TIME_AT = {"day": "during the day", "sunset": "at sunset", "night": "at night"}
WEATHER_WORD = {"clear": "clear", "rain": "rainy", "snow": "snowy", "fog": "foggy"}
WHERE = {"left": "on the left", "middle": "in the middle", "right": "on the right"}
MOVE_TO = {"left": "to the left", "middle": "to the middle", "right": "to the right"}
SCALE = {"larger": ("twice as big", "double the size"), "smaller": ("half the size", "half as big")}
ACCESSORY_WORD = {"hat": "hat", "crown": "crown", "bow": "bow", "glasses": "pair of glasses", "scarf": "scarf",
                  "bowtie": "bow tie"}
ACCESSORY_WORD_BARE = {**ACCESSORY_WORD, "glasses": "glasses"}
CHAR_NOUNS = ("creature", "character", "monster", "critter")
CARRIER_WORD = {"sign": "sign", "banner": "banner", "label": "label", "shirt": "T-shirt",
                "rounded_badge": "badge", "square_badge": "badge", "logo": "picture"}
# where a thing sits in a studio picture: (vertical, horizontal) -> words; the middle row says what WHERE says
PLACE = {("top", "left"): "at the top left", ("top", "centre"): "at the top", ("top", "right"): "at the top right",
         ("middle", "left"): "on the left", ("middle", "centre"): "in the middle", ("middle", "right"): "on the right",
         ("bottom", "left"): "at the bottom left", ("bottom", "centre"): "at the bottom",
         ("bottom", "right"): "at the bottom right"}


def phrasings(family: str, split: str) -> list[str]:
    held = split == "heldout"
    return [t for i, t in enumerate(TEMPLATES[family]) if is_heldout_phrasing(i) == held]


def phrase(family: str, rng: random.Random, split: str, **slots: str) -> str:
    template = rng.choice(phrasings(family, split))
    text = template.format(**slots)
    return text[0].upper() + text[1:]

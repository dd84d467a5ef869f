// The gallery: OpenKontext's shipped toy-world images (examples/ in the repository), each with an instruction for
// one capability, phrased as the toy world phrases its edits (docs/toyworld.md).

export const EXAMPLES = [
  { capability: "Text edit", image: "sign.png", prompt: "Change 'KELLAR' to 'SUMITH'." },
  { capability: "Character in a new scene", image: "character.png",
    prompt: "Put this character on a beach, on the right, large." },
  { capability: "Style", image: "scene.png", prompt: "Turn this into pixel art." },
  { capability: "Local edit", image: "scene.png", prompt: "Make the pink ball blue." },
  { capability: "Accessory", image: "character.png", prompt: "Give the green creature a red hat." },
  { capability: "Global edit", image: "sign.png", prompt: "Make it night." },
  { capability: "Text to image", image: null,
    prompt: "Draw a blue creature and a red ball in a meadow at sunset." },
];

/** Where the page serves an example image, and the path the curl command names (the repository's copy). */
export const exampleUrl = (image) => `playground/examples/${image}`;
export const examplePath = (image) => `examples/${image}`;

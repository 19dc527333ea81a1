"""MaPLe: multi-modal prompt learning, vision prompts projected from the text prompts."""

"""PromptSRC: IVLP prompts self-regulated towards the frozen CLIP, with Gaussian prompt aggregation."""

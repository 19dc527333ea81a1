"""IVLP: independent deep vision-language prompts in both towers."""

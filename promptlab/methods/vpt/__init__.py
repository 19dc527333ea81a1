"""VPT: deep visual prompt tuning (vision tower only), an ablation of IVLP."""

"""The archive's lifecycle, each step a commit in the custody chain: retention, compaction, vacuum, tiers."""

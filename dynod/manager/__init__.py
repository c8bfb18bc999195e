"""The dyno manager: desired formation vs running dynos, lifecycles, rollouts."""

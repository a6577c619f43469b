"""Prompts the generation tests share: plain strings of different lengths and a multi-turn conversation, so
batching, padding and chat formatting are all exercised."""

MIXED_PROMPTS = [
    "How do I bake bread?",
    "hi",
    "Tell me, in as many words as you like, how to make a loaf of bread with flour, water and yeast at home?",
    [{"role": "user", "content": "first turn"}, {"role": "assistant", "content": "an answer"},
     {"role": "user", "content": "and the second turn of a longer conversation?"}],
    "What should I do then?",
]

"""Helpers shared by several test modules (no tests here): toy records and run folders for the DPO stage
(`dpo`), tiny judges and toy-world rates for distillation (`distill`), a real OpenAI-compatible HTTP server on
127.0.0.1 for judge tests (`openai_server`). Tests import them as `from helpers.dpo import make_run`."""

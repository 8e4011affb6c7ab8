"""The clinician assistant: a plain-language explanation of one stored prediction, and
answers to follow-up questions, built from that prediction's facts only.

`facts` gathers what may be said (never who the patient is), `prompt` turns it into the
conversation a provider sees, `providers` are the language models (OpenAI, Anthropic) and
`offline` the templates used without one, `grounding` checks an answer against the facts,
`service` runs one exchange and records it, and `routes` answers it at
`/api/v1/predictions/{id}/explain` in the shape of `schemas`.
"""

"""A small "existing app" (authors and their notes) in the SQLModel tutorial's style, adopting the
skill step by step: references/existing-app.md. Its tables live on their own metadata, never on
SQLModel.metadata (the reference app's), so the two apps share this repository without mixing.
"""

"""The gptcore Gradio app: one module per tab (sample, attention, inside, models, train, ablations) plus
shared helpers.

``demo.app.build_app()`` assembles the tabs; ``app.py`` at the repository root launches it.
"""

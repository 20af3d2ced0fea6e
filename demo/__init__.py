"""The gptcore Gradio app.

``tabs/`` holds one module per tab (sample, attention, inside, models, train, ablations), none importing
another; ``views/`` what the tabs draw (HTML views, figures, explanations); ``server/`` the machinery they
share (settings, the model registry, uploads, sessions, checked inputs, the training job).
``demo.app.build_app()`` assembles the tabs; ``app.py`` at the repository root launches it.
"""

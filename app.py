"""Start the gptcore app: ``python app.py``.

Host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Hugging Face Spaces sets them). The app is
built inside ``main`` because the Train tab's worker process (multiprocessing "spawn") re-imports this file:
building the app at import time would make every training run import Gradio and load a model first.
"""


def main() -> None:
    from demo.app import build_app, launch_options
    from demo.server.settings import AppSettings

    settings = AppSettings()
    build_app(settings).launch(**launch_options(settings))


if __name__ == "__main__":
    main()

# Stylizer web app for a GPU host (docker run --gpus all) or a Hugging Face Docker Space.
# The torch wheels from PyPI carry their own CUDA runtime, so a slim Python base is enough.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860

# Hugging Face Spaces run containers as uid 1000.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

COPY --chown=1000:1000 requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

USER 1000
ENV HOME=/home/user \
    HF_HOME=/home/user/.cache/huggingface \
    TORCH_HOME=/home/user/.cache/torch

COPY --chown=1000:1000 . .

# Bake a preset's weights into the image: docker build --build-arg PRESET=sd15 .
# Left empty, weights download on first start into HF_HOME / TORCH_HOME.
ARG PRESET=""
ENV STYLIZER_MODEL=${PRESET:-sd15}
RUN if [ -n "$PRESET" ]; then python -m stylizer download --model "$PRESET"; fi

EXPOSE 7860
CMD ["python", "app.py"]

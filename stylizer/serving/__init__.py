"""Serving: the worker that owns the models (:mod:`.worker`, :mod:`.pool`), the plain data a job streams
(:mod:`.jobs`), its files (:mod:`.outputs`), memory hand-back (:mod:`.memory`), the deployment profile
decided at start-up (:mod:`.deployment`), ZeroGPU (:mod:`.zerogpu`) and Ray Serve (:mod:`.ray_replica`,
:mod:`.ray_client`). Nothing here imports Gradio.
"""

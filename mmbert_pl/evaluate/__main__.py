"""python -m mmbert_pl.evaluate"""
from mmbert_pl.evaluate.cli import main

main()

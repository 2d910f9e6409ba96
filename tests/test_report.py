"""report.py: the figures keep every piece of text inside the image, whatever the number of labels."""

import numpy as np
import pytest

from acceltune.report import confusion_figure, write_report


@pytest.mark.parametrize("n", [2, 3, 10, 77])
def test_confusion_title_and_labels_fit_in_the_figure(n):
    import matplotlib.pyplot as plt

    names = [f"label_{i}_with_a_long_name" for i in range(n)]
    fig = confusion_figure(np.eye(n, dtype=int).tolist(), names)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox
    from matplotlib.text import Text

    texts = [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
    assert any("Confusion matrix" in t.get_text() for t in texts)
    for artist in texts:
        box = artist.get_window_extent(renderer)
        assert box.x0 >= frame.x0 - 1 and box.x1 <= frame.x1 + 1, artist.get_text()
        assert box.y0 >= frame.y0 - 1 and box.y1 <= frame.y1 + 1, artist.get_text()
    plt.close(fig)


def test_report_lists_headline_and_per_class_scores(tmp_path):
    metrics = {"train_runtime_s": 12.5, "test": {"accuracy": 0.75, "macro_f1": 0.5, "examples": 4,
               "per_class": {"a": {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2},
                             "b": {"precision": 0.667, "recall": 1.0, "f1": 0.8, "support": 2}},
               "confusion_matrix": [[1, 1], [0, 2]]}}
    path = write_report(tmp_path, metrics, ["a", "b"], split="test", title="t")
    text = path.read_text()
    assert "| train_runtime_s | 12.5 |" in text
    assert "| accuracy | 0.7500 |" in text
    assert "| a | 1.000 | 0.500 | 0.667 | 2 |" in text
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000

"""Figures are pure functions of numbers: checked by what they draw, not by pixels."""

import numpy as np
import torch

from ganlab.plots import image_grid, moving_average, separate_loss_curves, training_curves


def test_moving_average_is_a_trailing_mean_over_the_window():
    assert np.allclose(moving_average(np.array([0, 1, 2, 3, 4, 5]), 3), [0, 0.5, 1, 2, 3, 4])
    assert np.allclose(moving_average(np.array([2.0, 4.0]), 1), [2, 4])


def test_training_curves_draw_raw_and_smoothed_lines_with_an_epoch_axis():
    steps = np.arange(1, 301)
    figure = training_curves(steps, {"G loss": np.linspace(1, 2, 300), "D loss": np.linspace(0.7, 0.3, 300)},
                             steps_per_epoch=100, title="losses", ylabel="BCE loss")
    axes = figure.axes[0]
    data_lines = [line for line in axes.lines if len(line.get_xdata()) == 300]
    assert len(data_lines) == 4  # raw + moving average for each series
    assert sorted(line.get_alpha() or 1.0 for line in data_lines) == [0.2, 0.2, 1.0, 1.0]
    assert any(child.get_xlabel() == "epoch" for child in axes.child_axes)
    assert [text.get_text() for text in axes.get_legend().get_texts()][0].startswith("G loss")


def test_separate_loss_curves_put_d_first_each_on_its_own_scale():
    steps = np.arange(1, 201)
    loss_d, loss_g = np.linspace(0.01, 0.02, 200), np.linspace(2, 6, 200)
    figure = separate_loss_curves(steps, loss_d, loss_g, steps_per_epoch=100)
    d_axes, g_axes = [axes for axes in figure.axes if axes.get_title()]
    assert (d_axes.get_title(), g_axes.get_title()) == ("Discriminator loss", "Generator loss")
    # Each panel's y range is its own curve's, so D's 0.01-0.02 is not flattened by G's 2-6.
    assert d_axes.get_ylim()[1] < 0.1 and g_axes.get_ylim()[0] > 1
    assert np.allclose(d_axes.lines[0].get_ydata(), loss_d) and np.allclose(g_axes.lines[0].get_ydata(), loss_g)


def test_image_grid_is_torchvisions_make_grid_to_the_byte():
    from torchvision.utils import make_grid  # the reference; ganlab draws grids without importing torchvision

    for count, images_per_row in ((64, 8), (15, 8), (8, 3), (2, 1), (1, 8)):
        images = torch.randn(count, 1, 28, 28, generator=torch.Generator().manual_seed(count)) * 1.5  # some beyond ±1
        reference = make_grid(images, nrow=images_per_row, padding=2, normalize=True, value_range=(-1, 1),
                              pad_value=1.0)
        assert np.array_equal(image_grid(images, images_per_row),
                              (reference[0] * 255).round().to(torch.uint8).numpy()), (count, images_per_row)


def test_image_grid_maps_minus_one_to_black_and_one_to_white():
    images = torch.cat([-torch.ones(4, 1, 28, 28), torch.ones(4, 1, 28, 28)])
    grid = image_grid(images, images_per_row=4)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 30 + 2, 4 * 30 + 2)
    assert grid[2:30, 2:30].max() == 0 and grid[32:60, 2:30].min() == 255

"""Stage make_demo: generate the synthetic demo datasets in their real datasets' native layouts."""

from mobiledx.config import DatasetPaths, parse_stage_args
from mobiledx.data.demo import generate_cnmc_demo, generate_ham10000_demo
from mobiledx.io import atomic_directory


def main(argv=None) -> None:
    _, params = parse_stage_args(__doc__, argv, with_dataset=False)
    demo, seed = params["demo"], int(params["seed"])
    with atomic_directory(DatasetPaths("demo-skin").demo_raw) as out:
        generate_ham10000_demo(out, n_images=int(demo["skin_images"]), seed=seed)
    with atomic_directory(DatasetPaths("demo-blood").demo_raw) as out:
        generate_cnmc_demo(
            out,
            n_subjects=int(demo["blood_subjects"]),
            cells_per_subject=int(demo["blood_cells_per_subject"]),
            seed=seed,
        )


if __name__ == "__main__":
    main()

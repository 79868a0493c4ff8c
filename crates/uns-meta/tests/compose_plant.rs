//! The compose deployment's plant file describes the same plant as `uns up --demo`, so the
//! simulated plant, the bridge's mapping and the ERP's work centres fit it in both (they drifted
//! once: the compose file lacked the `erp_id`s and every ERP order was refused there).

use uns_meta::{PlantConfig, PlantModel};

#[test]
fn the_compose_plant_file_is_the_demo_plant() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/compose/meta.toml"
    );
    let text = std::fs::read_to_string(path).expect("deploy/compose/meta.toml");
    #[derive(serde::Deserialize)]
    struct File {
        plant: PlantConfig,
    }
    let file: File = toml::from_str(&text).expect("a [plant] section");
    let compose = PlantModel::try_from(file.plant).expect("a valid plant");
    assert_eq!(compose, PlantModel::demo());
}

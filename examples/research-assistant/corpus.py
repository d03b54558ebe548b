#!/usr/bin/env python3
"""Generates corpus.jsonl, the research assistant's document collection.

Each of 25 subjects has six short facts; each document leads with one of them and adds
one to three others (a deterministic choice per subject), so the corpus has 250 short
documents whose ids name their subject: {"id": "bees-03", "title", "topic", "text"}.
Standard library only; the output is the same on every run:

    python3 examples/research-assistant/corpus.py > examples/research-assistant/corpus.jsonl
"""

import json
import random
import sys

DOCUMENTS_PER_SUBJECT = 10

# subject id -> (title, topic, [(label, fact), ...])
SUBJECTS = {
    "bees": ("Honey bees", "nature", [
        ("nectar", "Honey bees make honey from the nectar of flowers."),
        ("the hive", "Forager bees carry nectar back to the hive in a special honey stomach."),
        ("evaporation", "Worker bees fan the stored nectar with their wings until most of its water evaporates and it thickens into honey."),
        ("wax combs", "Bees store honey in hexagonal wax cells and seal them with a cap of wax."),
        ("pollination", "While collecting nectar, bees carry pollen from flower to flower and pollinate many crops."),
        ("the colony", "A honey bee colony has one queen, thousands of female workers and a few hundred male drones."),
    ]),
    "solar": ("Solar panels", "technology", [
        ("photovoltaic cells", "Solar panels are made of photovoltaic cells, usually of silicon, that turn sunlight into electricity."),
        ("direct current", "A solar cell produces direct current, which an inverter converts into alternating current for the home and the grid."),
        ("efficiency", "Most rooftop solar panels convert about 18 to 22 percent of the sunlight that reaches them into electricity."),
        ("orientation", "In the northern hemisphere, panels facing south at a tilt close to the local latitude collect the most energy over a year."),
        ("heat", "Solar panels lose some efficiency when they get hot, so they produce best on cold, clear days."),
        ("lifetime", "Solar panels typically last 25 to 30 years and slowly lose about half a percent of their output each year."),
    ]),
    "volcanoes": ("Volcanoes", "earth", [
        ("magma", "A volcano erupts when molten rock called magma rises through cracks in the Earth's crust."),
        ("lava", "Magma that reaches the surface is called lava, and it can be hotter than 1,000 degrees Celsius."),
        ("plate boundaries", "Most volcanoes form where tectonic plates pull apart or where one plate sinks beneath another."),
        ("hotspots", "Some volcanoes, like those of Hawaii, sit above hotspots where hot mantle rock rises far from plate edges."),
        ("ash", "Explosive eruptions throw ash and gas high into the atmosphere, where ash can disrupt air travel."),
        ("fertile soil", "Volcanic ash weathers into fertile soil, which is why farms often surround old volcanoes."),
    ]),
    "tides": ("Tides", "earth", [
        ("the moon", "Ocean tides are caused mainly by the gravitational pull of the Moon on the Earth's oceans."),
        ("two tides a day", "Most coasts see two high tides and two low tides roughly every 24 hours and 50 minutes."),
        ("the sun", "The Sun's gravity also pulls on the oceans, with a little less than half the effect of the Moon."),
        ("spring tides", "Spring tides, with the largest range, happen near new and full moon when the Sun and Moon pull in line."),
        ("neap tides", "Neap tides, with the smallest range, happen near the quarter moons when the Sun and Moon pull at right angles."),
        ("coastline shape", "The shape of a coastline and the sea floor can make local tides much larger, as in the Bay of Fundy."),
    ]),
    "bread": ("Bread", "food", [
        ("yeast", "Bread dough rises because yeast ferments sugars in the flour and releases carbon dioxide gas."),
        ("gluten", "Kneading develops gluten, a stretchy network of wheat proteins that traps the gas as bubbles."),
        ("proofing", "Dough is left to proof in a warm place so the yeast has time to produce gas and flavour."),
        ("baking", "In the oven the gas expands, the yeast dies, and the starch and proteins set into a firm crumb."),
        ("the crust", "The brown crust and its flavour come from the Maillard reaction between sugars and proteins at high heat."),
        ("sourdough", "Sourdough bread is leavened by a starter of wild yeasts and lactic acid bacteria, which also make it sour."),
    ]),
    "kafka": ("Apache Kafka", "software", [
        ("the log", "Apache Kafka is a distributed event streaming platform built around an append-only log."),
        ("topics and partitions", "Producers write records to topics, which are split into partitions spread across brokers."),
        ("offsets", "Each record in a partition has an offset, and consumers track the offsets they have read."),
        ("consumer groups", "Consumers in the same consumer group share the partitions of a topic, so each record is processed by one of them."),
        ("replication", "Partitions are replicated across brokers, so the data survives the failure of a broker."),
        ("retention", "Kafka keeps records for a configured retention time or size, or keeps the latest record per key with log compaction."),
    ]),
    "photosynthesis": ("Photosynthesis", "nature", [
        ("light into sugar", "Photosynthesis is the process by which plants use light energy to turn carbon dioxide and water into sugar."),
        ("oxygen", "Photosynthesis releases oxygen as a by-product, which is the source of most of the oxygen in the air."),
        ("chlorophyll", "Chlorophyll, the green pigment in leaves, absorbs red and blue light and reflects green light."),
        ("chloroplasts", "Photosynthesis takes place in chloroplasts, small structures inside plant cells."),
        ("stomata", "Leaves take in carbon dioxide through tiny pores called stomata, which also let water vapour escape."),
        ("algae", "Algae and cyanobacteria in the oceans carry out a large share of the photosynthesis on Earth."),
    ]),
    "earthquakes": ("Earthquakes", "earth", [
        ("faults", "Earthquakes happen when rocks on either side of a fault suddenly slip past each other."),
        ("seismic waves", "The sudden slip releases energy as seismic waves that travel through the ground."),
        ("magnitude", "The magnitude scale is logarithmic: each whole number step means about 32 times more energy released."),
        ("the epicentre", "The point on the surface directly above where the rupture starts is called the epicentre."),
        ("tsunamis", "Large earthquakes under the sea can lift the sea floor and set off a tsunami."),
        ("seismometers", "Seismometers record ground motion, and several of them together locate an earthquake."),
    ]),
    "coffee": ("Coffee", "food", [
        ("the coffee cherry", "Coffee beans are the seeds of the fruit of the coffee plant, often called coffee cherries."),
        ("arabica and robusta", "Most coffee comes from two species, arabica, which is milder, and robusta, which has more caffeine."),
        ("roasting", "Roasting turns the green beans brown and creates the aromas of coffee through the Maillard reaction."),
        ("caffeine", "Caffeine keeps people alert by blocking adenosine, a molecule that builds up in the brain and causes drowsiness."),
        ("brewing", "Brewing extracts flavour from ground coffee with hot water, and finer grounds extract faster."),
        ("growing regions", "Coffee grows best in tropical highlands, in a belt between the Tropics of Cancer and Capricorn."),
    ]),
    "moon": ("The Moon", "space", [
        ("phases", "The Moon's phases come from how much of its sunlit half faces the Earth as it orbits."),
        ("the orbit", "The Moon orbits the Earth about once every 27 days, and its phases repeat every 29.5 days."),
        ("tidal locking", "The Moon always shows the same face to the Earth because it is tidally locked."),
        ("craters", "The Moon's surface is covered with craters made by asteroid and comet impacts."),
        ("origin", "The Moon probably formed from debris after a Mars-sized body collided with the young Earth."),
        ("Apollo", "Twelve astronauts walked on the Moon during the Apollo missions between 1969 and 1972."),
    ]),
    "rainbows": ("Rainbows", "science", [
        ("refraction", "A rainbow appears when sunlight is refracted, reflected and dispersed inside raindrops."),
        ("the colours", "Each colour of light bends by a slightly different amount, which spreads white light into a band of colours."),
        ("the sun behind you", "You see a rainbow when the Sun is behind you and rain is falling in front of you."),
        ("the angle", "The main rainbow forms at an angle of about 42 degrees from the point directly opposite the Sun."),
        ("double rainbows", "A fainter second rainbow, with its colours reversed, comes from light reflecting twice inside the drops."),
        ("red on the outside", "In the main rainbow, red is on the outside of the arc and violet on the inside."),
    ]),
    "vaccines": ("Vaccines", "health", [
        ("the immune system", "Vaccines train the immune system to recognise a germ without causing the disease."),
        ("antigens", "A vaccine contains an antigen, such as a weakened germ, an inactivated germ, or a piece of one."),
        ("memory cells", "After vaccination the body keeps memory cells that respond quickly if the real germ appears."),
        ("herd immunity", "When enough people are immune, a disease spreads poorly, which also protects those who cannot be vaccinated."),
        ("boosters", "Some vaccines need booster doses because the immune memory fades over time."),
        ("mRNA vaccines", "mRNA vaccines give cells instructions to make a harmless piece of a virus protein, which the immune system learns to recognise."),
    ]),
    "wind": ("Wind turbines", "technology", [
        ("the rotor", "Wind turbines turn the kinetic energy of the wind into electricity with a rotor connected to a generator."),
        ("blade shape", "Turbine blades are shaped like aircraft wings, so the wind creates lift that turns the rotor."),
        ("height", "Turbines are built tall because the wind is stronger and steadier higher above the ground."),
        ("the cube law", "The power in the wind grows with the cube of its speed, so twice the wind speed carries eight times the power."),
        ("cut-out speed", "Turbines shut down in very strong winds to protect themselves from damage."),
        ("offshore wind", "Offshore wind farms are built at sea, where the winds are stronger and more constant than on land."),
    ]),
    "glaciers": ("Glaciers", "earth", [
        ("compacted snow", "A glacier forms where more snow falls each year than melts, and the snow slowly compacts into ice."),
        ("flowing ice", "Under its own weight, glacier ice flows slowly downhill like a very thick liquid."),
        ("carving valleys", "Glaciers carve U-shaped valleys and carry rocks far from where they came from."),
        ("fresh water", "Glaciers and ice sheets hold about two thirds of the world's fresh water."),
        ("retreat", "Most glaciers in the world are shrinking as the climate warms."),
        ("sea level", "Meltwater from glaciers and ice sheets is a major cause of rising sea levels."),
    ]),
    "coral": ("Coral reefs", "nature", [
        ("polyps", "Coral reefs are built by colonies of tiny animals called polyps, which make skeletons of calcium carbonate."),
        ("algae partners", "Reef-building corals live with algae in their tissues, which give them food from photosynthesis."),
        ("bleaching", "When the water gets too warm, corals expel their algae and turn white, which is called bleaching."),
        ("biodiversity", "Coral reefs cover a tiny part of the ocean floor but shelter about a quarter of all marine species."),
        ("the Great Barrier Reef", "The Great Barrier Reef off Australia is the largest coral reef system in the world."),
        ("coastal protection", "Reefs protect coastlines by breaking waves before they reach the shore."),
    ]),
    "batteries": ("Lithium-ion batteries", "technology", [
        ("moving ions", "A lithium-ion battery stores energy by moving lithium ions between two electrodes."),
        ("charging", "When the battery charges, lithium ions move from the cathode to the graphite anode."),
        ("discharging", "When the battery discharges, the ions flow back to the cathode while electrons power the device."),
        ("energy density", "Lithium-ion batteries store a lot of energy for their weight, which is why phones and electric cars use them."),
        ("ageing", "Batteries slowly lose capacity with each charge cycle, faster when they are kept hot or fully charged."),
        ("thermal runaway", "A damaged or overheated lithium-ion cell can enter thermal runaway and catch fire."),
    ]),
    "cheese": ("Cheese", "food", [
        ("curdling milk", "Cheese is made by curdling milk, usually with rennet or acid, to separate solid curds from liquid whey."),
        ("rennet", "Rennet contains an enzyme that makes the milk protein casein clump together into curds."),
        ("cultures", "Bacterial cultures turn milk sugar into lactic acid, which flavours the cheese and helps preserve it."),
        ("ageing", "Cheeses are aged for weeks to years, and longer ageing usually gives a harder texture and stronger flavour."),
        ("salt", "Salt is added to cheese to draw out moisture, slow unwanted microbes and add flavour."),
        ("holes", "The holes in Swiss cheese come from carbon dioxide made by bacteria during ageing."),
    ]),
    "heart": ("The human heart", "health", [
        ("four chambers", "The human heart has four chambers: two atria on top and two ventricles below."),
        ("two circuits", "The right side of the heart pumps blood to the lungs and the left side pumps it to the rest of the body."),
        ("valves", "Valves inside the heart keep blood flowing in one direction."),
        ("the heartbeat", "Each heartbeat is started by an electrical signal from the sinoatrial node, the heart's natural pacemaker."),
        ("resting rate", "A resting adult heart usually beats between 60 and 100 times a minute."),
        ("exercise", "Regular exercise strengthens the heart so it pumps more blood with each beat."),
    ]),
    "lightning": ("Lightning", "science", [
        ("charge separation", "Lightning starts when collisions between ice particles in a storm cloud separate electric charge."),
        ("the discharge", "A lightning bolt is a giant electric discharge between the cloud and the ground or within the cloud."),
        ("heat", "A lightning channel heats the air to about 30,000 degrees Celsius, hotter than the surface of the Sun."),
        ("thunder", "Thunder is the sound of air expanding explosively around the hot lightning channel."),
        ("counting seconds", "Light arrives almost at once while sound travels about one kilometre in three seconds, so counting seconds gives the distance."),
        ("lightning rods", "Lightning rods give a strike a safe path to the ground, protecting the building."),
    ]),
    "compost": ("Compost", "nature", [
        ("decomposition", "Compost is organic matter broken down by bacteria, fungi and worms into dark, crumbly humus."),
        ("greens and browns", "A good compost pile mixes nitrogen-rich greens, like food scraps, with carbon-rich browns, like dry leaves."),
        ("air", "Turning a compost pile adds oxygen, which the microbes need to work quickly and without bad smells."),
        ("heat", "An active compost pile can heat up to 60 degrees Celsius, which kills many weed seeds."),
        ("moisture", "Compost should be as moist as a wrung-out sponge: too dry stops the microbes, too wet drives out the air."),
        ("soil", "Compost improves soil structure, holds water and feeds plants slowly."),
    ]),
    "tea": ("Tea", "food", [
        ("one plant", "Green, black, white and oolong tea all come from the leaves of the same plant, Camellia sinensis."),
        ("oxidation", "Black tea is fully oxidised after rolling, while green tea is heated early to stop oxidation."),
        ("caffeine", "A cup of tea usually has less caffeine than a cup of coffee."),
        ("water temperature", "Green tea is best brewed with water below boiling, while black tea takes water near boiling."),
        ("herbal infusions", "Herbal teas such as chamomile or peppermint are infusions of other plants and contain no tea leaves."),
        ("origins", "Tea drinking began in China thousands of years ago and later spread along trade routes to the rest of the world."),
    ]),
    "deserts": ("Deserts", "earth", [
        ("little rain", "A desert is a region that receives less than about 250 millimetres of rain a year."),
        ("cold deserts", "Not all deserts are hot: Antarctica is the largest desert on Earth."),
        ("temperature swings", "Dry desert air holds little heat, so nights can be much colder than days."),
        ("adapted plants", "Cacti and other desert plants store water in their stems and have small or no leaves to save water."),
        ("sand dunes", "Wind piles sand into dunes, but most of the world's desert surface is rock and gravel, not sand."),
        ("the Sahara", "The Sahara is the largest hot desert in the world, covering much of North Africa."),
    ]),
    "migration": ("Bird migration", "nature", [
        ("seasons", "Many birds migrate to follow food and good breeding conditions as the seasons change."),
        ("navigation", "Migrating birds navigate using the Sun, the stars and the Earth's magnetic field."),
        ("the Arctic tern", "The Arctic tern has the longest known migration, flying between the Arctic and the Antarctic every year."),
        ("fuel", "Before migrating, birds eat heavily and store fat as fuel for the long flight."),
        ("flying in a V", "Geese fly in a V formation, which saves energy because each bird rides the upwash of the one ahead."),
        ("stopover sites", "Migrating birds rest and feed at stopover sites such as wetlands along their route."),
    ]),
    "rust": ("The Rust programming language", "software", [
        ("memory safety", "Rust is a programming language that guarantees memory safety without a garbage collector."),
        ("ownership", "Every value in Rust has a single owner, and the value is freed when its owner goes out of scope."),
        ("borrowing", "The borrow checker lets code use many shared references or one mutable reference to a value at a time."),
        ("data races", "Rust's ownership rules prevent data races, so concurrent code is checked at compile time."),
        ("cargo", "Cargo is Rust's build tool and package manager, and it downloads libraries called crates."),
        ("zero-cost abstractions", "Rust offers zero-cost abstractions, so high-level code compiles to fast machine code."),
    ]),
    "clouds": ("Clouds and rain", "science", [
        ("condensation", "Clouds form when rising air cools and its water vapour condenses into tiny droplets or ice crystals."),
        ("condensation nuclei", "Water vapour condenses on tiny particles of dust, salt or smoke called condensation nuclei."),
        ("raindrops", "Rain falls when cloud droplets collide and merge until they are too heavy to stay aloft."),
        ("cloud types", "Cumulus clouds are puffy heaps, stratus clouds are flat layers, and cirrus clouds are thin wisps of ice."),
        ("the water cycle", "Rain is part of the water cycle, in which water evaporates, condenses into clouds and falls again."),
        ("snow", "When the air is cold enough all the way to the ground, precipitation falls as snow instead of rain."),
    ]),
}


def documents():
    for subject, (title, topic, facts) in SUBJECTS.items():
        rng = random.Random(subject)
        seen = set()
        for no in range(1, DOCUMENTS_PER_SUBJECT + 1):
            # The lead fact cycles through the facts; one to three others follow it.
            lead = (no - 1) % len(facts)
            others = [i for i in range(len(facts)) if i != lead]
            while True:
                extra = tuple(sorted(rng.sample(others, rng.choice((1, 2, 3)))))
                if (lead, extra) not in seen:
                    seen.add((lead, extra))
                    break
            yield {
                "id": f"{subject}-{no:02d}",
                "title": f"{title}: {facts[lead][0]}",
                "topic": topic,
                "text": " ".join(facts[i][1] for i in (lead,) + extra),
            }


def main():
    for document in documents():
        sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

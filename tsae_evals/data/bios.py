"""Templated biographies labelled with profession and gender: the offline stand-in for SAE-Bench's bias-in-bios.

SAE-Bench's SCR and TPP need texts with two independent labels so that its own code can build the spuriously
correlated training sets (e.g. only male professors against only female nurses) and the balanced test sets. The
`sae-probes` wikidata sets label gender (5000 texts) and occupations in separate sets that share too few texts to
cross, so we write the biographies: the profession shows only in what the person does (no title word, like
bias-in-bios' `hard_text`, whose first sentence naming the title is removed), the gender only in the first name
and pronouns; everything else is drawn from profession- and gender-neutral filler. Columns and integer codes are
SAE-Bench's (`dataset_info.profession_dict`, `gender_dict`), so its loaders read the frame unchanged.
"""

from __future__ import annotations

import random
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

DATASET = "tsae-evals/templated_bias_in_bios"
"""Base name; SAE-Bench appends `_class_set1` and strips it again, and asserts `bias_in_bios` is in the name."""
CLASS_SET = f"{DATASET}_class_set1"

ACTIVITIES: dict[str, tuple[str, ...]] = {
    "accountant": (
        "{they} prepares tax returns and quarterly statements for small businesses",
        "{they} reconciles ledgers and audits expense reports every month",
        "clients trust {them} with payroll, bookkeeping and year-end filings",
        "{their} work centres on balance sheets, depreciation schedules and tax codes",
        "{they} advises families on budgeting and retirement savings plans",
        "{they} reviews invoices and cash-flow forecasts for a regional firm",
    ),
    "architect": (
        "{they} designs energy-efficient houses and community libraries",
        "{they} draws floor plans and elevations for urban housing projects",
        "{their} buildings use timber frames, daylight and open courtyards",
        "{they} works with planners and engineers on the layout of new neighbourhoods",
        "{they} restores historic facades while adding modern extensions",
        "clients hire {them} to turn rough sketches into detailed construction drawings",
    ),
    "attorney": (
        "{they} represents clients in contract disputes and civil litigation",
        "{they} drafts wills, trusts and real-estate agreements",
        "{they} argues motions in county court and negotiates settlements",
        "{their} practice focuses on employment law and workplace discrimination cases",
        "{they} advises start-ups on intellectual property and licensing",
        "{they} prepares briefs, depositions and filings for trial",
    ),
    "dentist": (
        "{they} cleans teeth, fills cavities and fits crowns",
        "{they} treats gum disease and performs root canals",
        "{their} patients come in for check-ups, x-rays and whitening",
        "{they} teaches children how to brush and floss properly",
        "{they} places implants and repairs chipped teeth",
        "{they} runs a family practice focused on preventive oral care",
    ),
    "filmmaker": (
        "{they} wrote and directed two feature documentaries",
        "{their} short films have screened at festivals in Berlin and Toronto",
        "{they} edits footage, plans shots and works with cinematographers",
        "{they} is developing a drama series about a fishing town",
        "{they} produces music videos and independent films",
        "{their} latest movie follows three families through a hard winter",
    ),
    "journalist": (
        "{they} covers city politics and local elections for a daily newspaper",
        "{they} interviews sources and files stories on deadline",
        "{their} investigative reporting exposed fraud in public contracts",
        "{they} writes features about science, health and climate",
        "{they} reports from courtrooms and council meetings",
        "{their} articles have appeared in several national magazines",
    ),
    "nurse": (
        "{they} cares for patients on the night shift at the county hospital",
        "{they} administers medication and monitors vital signs on a surgical ward",
        "{they} works in the emergency department, triaging incoming patients",
        "{their} work includes wound care, IV lines and patient education",
        "{they} supports families through long stays in intensive care",
        "{they} assists doctors during procedures and keeps patient charts",
    ),
    "professor": (
        "{they} teaches undergraduate courses and supervises doctoral students",
        "{their} research on economic history is published in leading journals",
        "{they} leads a university lab and writes grant proposals",
        "{they} lectures on comparative literature and advises graduate theses",
        "{they} chairs the faculty committee and mentors junior researchers",
        "{their} seminars cover theory, research methods and academic writing",
    ),
    "psychologist": (
        "{they} provides therapy for adults with anxiety and depression",
        "{they} assesses children for learning and attention difficulties",
        "{their} clinical practice uses cognitive behavioural therapy",
        "{they} counsels couples and families through difficult transitions",
        "{they} runs group sessions on stress, grief and trauma",
        "{they} conducts research on memory and emotion",
    ),
    "surgeon": (
        "{they} performs knee and hip replacements at a regional hospital",
        "{they} operates on patients with heart and lung conditions",
        "{their} specialty is minimally invasive abdominal surgery",
        "{they} leads the operating team and reviews scans before each procedure",
        "{they} repairs fractures and torn ligaments after sports injuries",
        "{they} trains residents in the operating room",
    ),
    "teacher": (
        "{they} teaches fourth-grade reading, maths and science",
        "{they} plans lessons, grades homework and meets with parents",
        "{their} classroom is known for hands-on projects and field trips",
        "{they} coaches the school debate club after classes",
        "{they} helps students who are learning English as a second language",
        "{they} teaches history at a public middle school",
    ),
}

FEMALE_NAMES = (
    "Anna",
    "Maria",
    "Emily",
    "Sarah",
    "Laura",
    "Grace",
    "Julia",
    "Olivia",
    "Hannah",
    "Rachel",
    "Nora",
    "Claire",
    "Sophie",
    "Linda",
    "Karen",
)
MALE_NAMES = (
    "James",
    "David",
    "Michael",
    "Daniel",
    "Thomas",
    "Peter",
    "Robert",
    "Mark",
    "Paul",
    "Steven",
    "Eric",
    "Brian",
    "Kevin",
    "Simon",
    "Jack",
)
SURNAMES = (
    "Smith",
    "Garcia",
    "Miller",
    "Chen",
    "Brown",
    "Novak",
    "Wilson",
    "Okafor",
    "Taylor",
    "Kowalski",
    "Moore",
    "Silva",
    "Anderson",
    "Nguyen",
    "Clark",
    "Rossi",
    "Walker",
    "Murphy",
    "Young",
    "Khan",
)
FILLER = (
    "{they} grew up in {city} and studied at a state university",
    "outside work, {they} enjoys hiking, cooking and reading",
    "{they} lives in {city} with {their} two children",
    "{they} volunteers at a local food bank on weekends",
    "{they} has over {years} years of experience",
    "{they} moved to {city} after finishing {their} degree",
    "in {their} spare time {they} plays the piano",
)
CITIES = ("Chicago", "Denver", "Boston", "Seattle", "Austin", "Portland", "Atlanta", "Toronto", "Dublin", "Leeds")
PRONOUNS = {
    "male": {"they": "he", "them": "him", "their": "his"},
    "female": {"they": "she", "them": "her", "their": "her"},
}


def biography(profession: str, gender: str, rng: random.Random) -> str:
    names = MALE_NAMES if gender == "male" else FEMALE_NAMES
    name = f"{rng.choice(names)} {rng.choice(SURNAMES)}"
    words = {**PRONOUNS[gender], "city": rng.choice(CITIES), "years": str(rng.randint(3, 25))}
    sentences = rng.sample(ACTIVITIES[profession], 2) + rng.sample(FILLER, 2)
    rng.shuffle(sentences)
    body = ". ".join(_capitalised(sentence.format(**words)) for sentence in sentences)
    # The name opens the text, the way a biography introduces its subject.
    return f"{name}. {body}."


def _capitalised(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


@cache
def bios_frame(split: str, per_quadrant: int, seed: int) -> pd.DataFrame:
    """`per_quadrant` biographies for every (profession, gender), columns `hard_text`, `profession`, `gender`."""
    import pandas as pd
    from sae_bench.sae_bench_utils.dataset_info import gender_dict, profession_dict

    rng = random.Random(f"{seed}-{split}")
    rows = [
        {
            "hard_text": biography(profession, gender, rng),
            "profession": profession_dict[profession],
            "gender": gender_dict[gender],
        }
        for profession in ACTIVITIES
        for gender in ("male", "female")
        for _ in range(per_quadrant)
    ]
    order = list(range(len(rows)))
    rng.shuffle(order)
    return pd.DataFrame([rows[i] for i in order])

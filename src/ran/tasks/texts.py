"""Built-in texts for the tasks: the key pool and the distractor sentences read between store and recall.

The distractor sentences come in two disjoint pools: ``TRAIN_DISTRACTORS`` are read in training,
``EVAL_DISTRACTORS`` only in evaluation, so a retention figure is measured on sentences the readout
never saw. No sentence contains a word of ``DEFAULT_KEY_POOL`` (checked by a test, and every task checks
its own keys against its distractors).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Common nouns that are one token (with a leading space) for GPT-2, Llama/SmolLM2 and Qwen tokenizers.
DEFAULT_KEY_POOL: tuple[str, ...] = tuple((
    "apple river piano tiger cloud stone house garden music water paper green dream money phone horse chair "
    "table bread happy window summer winter forest ocean mountain castle dragon pencil basket candle rocket "
    "planet silver golden coffee orange yellow purple doctor teacher camera guitar bottle letter flower butter "
    "mirror pillow monkey rabbit turtle spider engine bridge island desert valley circle square"
).split())

TRAIN_DISTRACTORS: tuple[str, ...] = (
    "The train left the station on time.",
    "She bought three tickets for the late show.",
    "Our neighbours painted their fence last weekend.",
    "The committee will meet again next Thursday.",
    "He forgot his umbrella at the office.",
    "Most of the shops close early on Sundays.",
    "The baby finally fell asleep after lunch.",
    "We walked along the beach until sunset.",
    "The printer in the hallway is broken again.",
    "They moved to a bigger apartment in March.",
    "The soup needs a little more salt.",
    "A loud noise woke everyone up at midnight.",
    "The bus was crowded this morning.",
    "Please remember to lock the back door.",
    "The museum opens at nine every day.",
    "My cousin is learning to play chess.",
    "The weather report promised a sunny afternoon.",
    "He answered every question without hesitation.",
    "The kids built a fort out of blankets.",
    "The meeting ran twenty minutes over.",
    "Fresh snow covered the quiet streets.",
    "She keeps her keys in the blue drawer.",
    "The old clock in the kitchen runs slow.",
    "We ordered pizza for the whole team.",
    "The library extended its opening hours.",
    "A stray cat sat outside the bakery.",
    "The match was cancelled because of rain.",
    "He spent the evening reading the news.",
    "The lights flickered during the storm.",
    "Our flight was delayed by two hours.",
    "The new manager starts on Monday.",
    "She jogs around the park every morning.",
    "The store ran out of milk by noon.",
    "They argued about the best route home.",
    "The tea was far too hot to drink.",
    "A small crowd gathered near the fountain.",
    "The exam results arrive next week.",
    "He fixed the squeaky hinge with some oil.",
    "The festival attracted visitors from abroad.",
    "We need new batteries for the remote.",
    "The lecture started a few minutes late.",
    "Her grandmother tells wonderful stories.",
    "The road was closed for repairs.",
    "The team celebrated their first victory.",
    "Someone left a note on the fridge.",
    "The heating stopped working overnight.",
    "He practices the violin before dinner.",
    "The parcel was delivered to the wrong address.",
    "A gentle breeze came through the open door.",
    "The restaurant was fully booked on Friday.",
    "They planted tomatoes behind the shed.",
    "The price of tickets went up again.",
    "The puppy chewed one of my shoes.",
    "We watched an old film on Saturday night.",
    "The neighbours are having a party tonight.",
    "His laptop battery died during the call.",
    "The farmer sold eggs at the market.",
    "The hotel lobby smelled of fresh paint.",
    "She signed up for a cooking class.",
    "The wind knocked over the recycling bins.",
    "The plumber arrived before eight.",
    "The children sang songs in the car.",
    "The queue at the post office was long.",
    "He lost his gloves on the way to work.",
)

EVAL_DISTRACTORS: tuple[str, ...] = (
    "The ferry crossed the bay in the fog.",
    "My brother repaired the bicycle himself.",
    "A long line formed outside the cinema.",
    "The dentist moved her appointment to Friday.",
    "Leaves piled up along the sidewalk.",
    "The orchestra rehearsed until late evening.",
    "He misplaced the receipt for the jacket.",
    "The conference will be held in Lisbon.",
    "Two pilots walked through the terminal.",
    "The cake collapsed when it cooled.",
    "Our internet connection dropped twice today.",
    "The farmers hoped for rain this week.",
    "She painted the kitchen a pale shade of blue.",
    "The sailors tied the boat to the dock.",
    "A new bakery opened near the school.",
    "The referee blew the whistle twice.",
    "He wrote a short poem about autumn.",
    "The elevator in our building is slow.",
    "They visited their aunt over the holidays.",
    "The janitor swept the empty gym.",
    "Thunder rolled across the hills at dawn.",
    "The students handed in their essays.",
    "A fox crossed the road near the farm.",
    "The nurse checked the patient's pulse.",
    "We rearranged the furniture in the lounge.",
    "The shop assistant wrapped the gift neatly.",
    "The sprinklers came on at six sharp.",
    "His shoes were soaked after the walk.",
    "The town council approved the new park.",
    "The recipe calls for two eggs and flour.",
    "A helicopter hovered above the stadium.",
    "The tourists took photos of the cathedral.",
    "Her glasses cracked when they fell.",
    "The radio played jazz all afternoon.",
    "The mechanic replaced the worn tyres.",
    "Snowflakes melted on the warm glass.",
    "The waiter brought the bill too early.",
    "Our guests arrived an hour ahead.",
    "The fireworks were postponed until Sunday.",
    "The geese flew south in a long line.",
)

_WORD = re.compile(r"[A-Za-z]+")


def words_of(text: str) -> set[str]:
    """The lower-case alphabetic words of a text."""
    return {w.lower() for w in _WORD.findall(text)}


def template_words(templates: Iterable[str], slot: str) -> set[str]:
    """The words of templates outside their slot: what a drawn key or value must not be."""
    return set().union(*(words_of(template.replace(slot, "")) for template in templates))

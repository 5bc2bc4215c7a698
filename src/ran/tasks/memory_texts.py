"""Built-in pools of the memory task: values, phrasings and ordinary conversation, each with a held-out split.

Values come in five kinds: single-token ``word`` s (drawn from the tokenizer's vocabulary, see
``ran.tasks.vocab``), made-up person ``name`` s (first name + surname), ``number`` s of 3-6 digits,
two-word ``place`` s and ``coined`` words (one or two made-up words of vocabulary pieces, drawn from the
tokenizer too: ``ran.tasks.vocab.coined_words``). Names and places are built from component lists whose
held-out parts are never combined into a training value; numbers are split by a checksum of their digits.
Phrasings (store and recall templates) have a held-out part too: a statement, a question, a value
mid-sentence or first.

The demo's name "Orsolya Vance" appears in no list, so the demo recalls a value training never read.
"""

from __future__ import annotations

KINDS = ("word", "name", "number", "place", "coined")

FIRST_NAMES: tuple[str, ...] = tuple((
    "Amara Bastian Cosima Dariel Elowen Fennick Galina Hollis Ilaria Jorund Kalinda Leopold Marisol Niamh Oswin "
    "Perpetua Quillon Rosalind Severin Tamsin Ulrike Valerian Wilhelmina Xanthe Yusuf Zinnia Anselm Brigida "
    "Casimir Delphine Emrys Florian Gwendolyn Hamish Isadora Jasper Katarzyna Lucian Mireille Nikolai Ottilie "
    "Pascal Radomir Saoirse Thaddeus Ursula Vesna Wendeline Ysolde Zoltan Alaric Berenike Corentin Dagny "
    "Evander Fiorella Gideon Henrike Ignatius Jolanta Konstantin Ludmila Maximilian Nerissa Octavian Philippa "
    "Rasmus Sigrun Tiberius Undine Vitalis Winifred Xavier Yevgenia Zephyrine"
).split())

SURNAMES: tuple[str, ...] = tuple((
    "Abernathy Brockway Castellan Dunmore Eskeland Falkenrath Garrowby Holloway Ingersoll Jablonski Kettering "
    "Lindqvist Marchetti Northcott Okonkwo Pemberton Quennell Ravenscroft Szabo Thornbury Underhill Valdivia "
    "Whitcombe Yardley Zielinski Ashdown Blackwood Crowther Drummond Ellsworth Fairweather Gallagher Hargreaves "
    "Iversen Jaramillo Kowalczyk Lockhart Montgomery Nakagawa Oyelaran Prescott Quigley Rutherford Sandoval "
    "Tennant Ulbricht Vasquez Wakefield Yamamoto Zimmerly Aldridge Bellweather Cartwright Delacroix Eberhardt "
    "Fitzwilliam Greenhalgh Hawthorne Ishikawa Jorgensen Kingsley Larkspur Merriweather Nightingale Ormsby "
    "Pendleton Radcliffe Stanhope Trevelyan Umberton Vandermeer Westbrook Yorke Zabriskie"
).split())

PLACE_PREFIXES: tuple[str, ...] = ("Port", "Lake", "Mount", "North", "South", "East", "West", "Upper", "Lower",
                                   "Fort", "Saint", "New", "Glen", "Cape", "Little")

PLACE_SUFFIXES: tuple[str, ...] = ("Falls", "Bay", "Harbour", "Springs", "Heights", "Ridge", "Crossing", "Valley",
                                   "Point", "Green", "Hollow", "Sound")

PLACE_NAMES: tuple[str, ...] = tuple((
    "Elvar Cadmore Brennick Ostrava Quenby Tarrow Wexmoor Halvard Drisdale Marrowgate Pellinor Strathmere "
    "Corvallen Innisfell Vardenholm Ashgrove Belmaris Calloway Dunraven Eldermoor Farrowdale Grimsworth "
    "Hollowmere Istvanburg Jarrowfield Kestrelton Lorimer Mirefield Norcaster Oakhaven Pelham Rookwood "
    "Saltmarsh Thistlewood Umbridge Velmont Whitmoor Yarrowby Zennor Abbotsley Brackenridge Coldharbour "
    "Dovercourt Emberly Foxhollow Glenmorrow Harrowgate Ivybridge Juniper Kilbarron Lindenfels Marlow "
    "Netherby Orwell Penrith Quarrington Rosemarkie Stonebury Tamworth Upminster Vellacourt Wycombe"
).split())

# Held out by position: every fifth component is never combined into a training value.
HELDOUT_EVERY = 5

# Store phrasings per kind: "{value}" marks the value. Training reads these forty, evaluation also the held-out
# ones (phrasings training never reads). Both switches are linear on layer L's input at the prompt's end, so they
# generalise only from many phrasings: with six store phrasings per kind, r19's write stayed shut on held-out name
# stores; with fifteen (the first fifteen here, r62, 3 seeds) held-out numbers stored in held-out phrasings came
# back 0.20 at D = 0, with forty (r63) 0.92, words 0.65 -> 0.93 (README, "One memory"; docs/tasks/probe_switches.py
# measures the switches alone).
STORE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "word": (
        "The secret word is {value}.", "Please remember the word {value}.", "My favourite word is {value}.",
        "Keep this word in mind: {value}.", "{value} is the word I want you to remember.",
        "Here is a word to hold on to: {value}. Thanks!", "Remember this word for me: {value}.",
        "The word of the day is {value}.", "I'd like you to keep the word {value} in mind.",
        "Our password for today is {value}.", "Can you hold on to the word {value} for me?",
        "Note the word {value}; I will need it later.", "{value}, that's the word to remember.",
        "I picked the word {value} for our game.", "Let's say the magic word is {value}.",
        "Hold on to this one: {value}.", "Could you keep {value} in your head for a while?",
        "The clue in the crossword was {value}, believe it or not.", "I keep thinking about the word {value} today.",
        "Okay, the word you need is {value}, got it?", "Just one word for now: {value}!",
        "Is {value} a good word to remember?", "My teacher wrote {value} on the board this morning.",
        "So, {value} is the answer to the riddle.", "Store the word {value} somewhere safe, please.",
        "Our secret signal will be {value}.", "The last word of the song was {value}, I think.",
        "If anyone asks, the word is {value}.", "Between us, the word is {value}; keep it quiet.",
        "First word that comes to mind: {value}.", "Can you memorise {value} for me?",
        "We agreed on {value} as the signal.", "I learned the word {value} in class today.",
        "Mark this word: {value}. It comes up again.", "The label on the box said {value}.",
        "Your word for this round is {value}.", "Hey, the word {value} is important, okay?",
        "For the test later, the answer is {value}.", "I wrote {value} on a sticky note so we won't lose it.",
        "What do you think of the word {value}? Keep it for me."),
    "name": (
        "My friend's name is {value}.", "I just met someone called {value}.", "{value} is my new neighbour.",
        "Please remember the name {value}.", "Yesterday I had lunch with {value} at the harbour.",
        "My new manager is called {value}.", "I work with a woman named {value}.",
        "Have you heard of {value}? She's my new colleague.", "Our new teacher is {value}.",
        "The author of that book is {value}.", "Remember the name {value} for me.",
        "I'm meeting {value} for coffee tomorrow.", "{value} called me this morning.", "My landlord's name is {value}.",
        "The doctor I saw today was {value}.", "Meet {value}, my new flatmate.",
        "The person who called was {value}, I think.", "Have you met {value}? He runs the bookshop.",
        "My daughter's best friend is {value}!", "The new intern, {value}, starts on Monday.",
        "Can you remember that {value} is coming to dinner?", "I sat next to {value} on the train.",
        "Our team lead this year is {value}.", "The message was signed by {value}.",
        "So {value} is the one who won the prize.", "My piano teacher is {value}, and she is strict.",
        "The contact for the project is {value}.", "Who would have guessed that {value} knew my sister?",
        "The guest speaker tonight is {value}.", "I got a letter from {value} today.", "Please note the name: {value}.",
        "The architect of the new library is {value}.", "I'm seeing {value} at the gym later.",
        "Is {value} the one you told me about?", "Our babysitter, {value}, is wonderful.",
        "Last week I ran into {value} at the market.", "The captain of the team is {value}!",
        "Keep in mind that my editor is {value}.", "The lawyer handling the case is {value}.",
        "Her name? It's {value}."),
    "number": (
        "My locker code is {value}.", "The number to remember is {value}.", "Please note the number {value}.",
        "{value} is my room number at the hotel.", "The parcel's tracking number is {value}, keep it safe.",
        "My bank sent me the code {value} this morning.", "My PIN is {value}.", "The code for the gate is {value}.",
        "Remember the number {value} for me.", "Can you keep the number {value} in mind?",
        "Flight {value} leaves at noon.", "I live at number {value} on the main road.", "My order number is {value}.",
        "{value} is the code for the storage unit.", "The ticket number they gave me was {value}.",
        "The code is {value}, just so you know.", "Room {value} is where the meeting is.",
        "My phone extension is {value}.", "Keep {value} in mind, it's the safe combination.",
        "Is {value} the right number for the alarm?", "The bus I take is number {value}.",
        "Our table number tonight is {value}!", "The serial number on the laptop is {value}.",
        "So the answer to the sum is {value}.", "My membership number is {value}, please keep it.",
        "The invoice number is {value}.", "Remember this code: {value}.", "They gave me {value} as my customer number.",
        "The door code changed to {value} yesterday.", "My seat on the plane is number {value}.",
        "The score at the end was {value} points.", "Can you hold on to {value} for me? It's my account number.",
        "The locker I got is {value}, near the entrance.", "Dial {value} to reach the front desk.",
        "My student number is {value}.", "The parking space is {value}, on the second floor.",
        "Hey, the number is {value}; don't lose it.", "The lottery ticket ends in {value}.",
        "Our apartment is {value}, top floor.", "The receipt number was {value}, I believe."),
    "place": (
        "I grew up in {value}.", "Next summer we are travelling to {value}.", "My sister lives in {value}.",
        "Please remember the place {value}.", "{value} is where the conference takes place.",
        "We stopped in {value} on the way home last week.", "My grandparents live in {value}.",
        "Have you ever been to {value}? We are going there soon.", "Remember the place {value} for me.",
        "The wedding will be in {value}.", "I was born in {value}.", "{value} is my favourite town.",
        "Our new office is in {value}.", "We spent our holiday in {value}.", "The train goes through {value} at noon.",
        "We are moving to {value} in the spring.", "My uncle runs a farm near {value}.",
        "The next stop is {value}, I believe.", "Is {value} nice this time of year?",
        "She moved to {value} after college.", "The festival is held in {value} every June!",
        "Our cabin is just outside {value}.", "I took the ferry from {value} to the island.",
        "My friend has a shop in {value}, by the river.", "Please keep in mind: {value}.",
        "The best pizza I ever had was in {value}.", "We met in {value}, years ago.",
        "Can you remember that the meeting is in {value}?", "The hike starts in {value} and ends at the lake.",
        "My parents retired to {value}.", "They built a new school in {value}.",
        "So we're driving to {value} tomorrow.", "The letter was posted from {value}.",
        "Our team plays in {value} next weekend.", "The museum in {value} is worth a visit.",
        "Hey, the place is {value}; note it.", "The storm hit {value} hardest.", "I'm flying into {value} on Friday.",
        "The recipe comes from a village called {value}.", "My first job was in {value}, at a hotel."),
    "coined": (
        "I made up a new word: {value}.", "My username on the forum is {value}.", "Our team's code name is {value}.",
        "The new brand is called {value}.", "Please remember the made-up word {value}.",
        "{value} is what we named the robot.", "My little brother invented the word {value}.",
        "The password for the wifi is {value}.", "Our cat is called {value}.", "The project is code-named {value}.",
        "In the game my character is {value}.", "Remember this name for me: {value}.",
        "The spaceship in my story is the {value}.", "We named the boat {value} last summer.",
        "My gamer tag is {value}.", "Call the new game {value}.", "The mascot's name is {value}!",
        "Our band is called {value}, and we play on Friday.", "Is {value} a good name for a startup?",
        "The robot in the film was {value}.", "My son named his teddy bear {value}.",
        "The secret handshake is called {value}.", "The new app is {value}, out next week.",
        "We call the dance move {value}.", "The planet in the book is {value}.", "So the dragon's name is {value}.",
        "Our wifi network is {value}.", "The code name for the launch is {value}; keep it quiet.",
        "My avatar is named {value}.", "They called the new flavour {value}.", "The ship's cat is {value}.",
        "Remember the made-up name {value}, please.", "The spell in the game is {value}!",
        "I'm naming my plant {value}.", "The village in the story is {value}.", "Our secret club is {value}.",
        "Hey, the word I invented is {value}; keep it.", "The font I designed is called {value}.",
        "My horse is called {value}, and she is fast.", "The drink they serve there is {value}."),
}
HELDOUT_STORE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "word": ("Don't forget the word {value}, I'll ask you later.", "Today's code word is {value}.",
             "Here's a word for you to keep, {value}, and I'll quiz you on it.",
             "Would you remember {value} as our code word?"),
    "name": ("Did I tell you that my cousin married {value}?", "The plumber who fixed our sink was {value}.",
             "Do you know {value}? We went to school together.", "Last night {value} gave a wonderful talk."),
    "number": ("Write this down for later: {value}.", "Our booking reference is {value}.",
               "Did you catch that the code is {value}?", "They told me {value} is the reference for my claim."),
    "place": ("We once got lost near {value} on a road trip.", "Have you ever heard of {value}? My aunt moved there.",
              "My cousin opened a bakery in {value} last year.", "Is {value} far from the coast?"),
    "coined": ("Guess what we called the puppy: {value}!", "The cafe on the corner is named {value}.",
               "Did you know my nickname at school was {value}?",
               "Her new novel introduces a creature called {value}."),
}
# Recall phrasings: fifteen per kind, because a switched recall is a linear switch on layer L's input at the
# prompt's end, and three per kind taught it little more than those three (README, "One memory": r18's held-out
# phrasing stayed shut; docs/tasks/probe_switches.py: taught on every kind, 15 phrasings each open it on all 20
# held-out ones, 3 each on 18; taught on numbers alone, on 3 of 4 and 2 of 4).
RECALL_TEMPLATES: dict[str, tuple[str, ...]] = {
    "word": ("What was the secret word?", "Which word did I ask you to remember?", "Tell me the word I gave you.",
             "What word did I tell you?", "Do you remember the word?", "Say the word I mentioned.",
             "What was that word again?", "Which word was it?", "Could you tell me the word from earlier?",
             "What's the word I wanted you to keep?", "Repeat the word, please.", "I forgot the word. What was it?",
             "Give me back the word.", "What word did I give you to hold on to?", "Quick question: the word?"),
    "name": ("What is my friend's name?", "What was the name I told you?", "Who did I mention earlier?",
             "What's the name of the person I told you about?", "Who was it I met?", "Do you remember the name?",
             "Tell me the name again.", "What was their name?", "Who did I say my neighbour was?",
             "I forgot the name. Who was it?", "What name did I give you?", "Which person did I talk about?",
             "Can you tell me who that was?", "Say the name I mentioned.", "Who was that again?"),
    "number": ("What was the number?", "Which number did I give you?", "Tell me the number I mentioned.",
               "What's the code I told you?", "Do you remember the number?", "Say the number again.",
               "What number did I ask you to keep?", "I forgot the number. What was it?", "What were the digits?",
               "Give me the number back.", "Which code was it?", "What's my number?",
               "Tell me the digits I gave you.", "Could you repeat the code?", "What number did I mention earlier?"),
    "place": ("Which place did I mention?", "What was the place I told you about?", "Where did I say?",
              "What town did I talk about?", "Do you remember the place?", "Where was it I mentioned?",
              "Tell me the place again.", "I forgot the place. Where was it?", "Which city did I name?",
              "What's the place I told you?", "Say the place I mentioned.", "Where did I tell you about?",
              "Which place was that?", "What location did I give you?", "Where was that again?"),
    "coined": ("What was the made-up word?", "Which name did I invent?", "What was the code name?",
               "Tell me the made-up name again.", "What's the name I coined?", "Do you remember the invented word?",
               "What did we call it?", "Which word did I make up?", "Say the made-up name.", "What was my username?",
               "What was the name again?", "I forgot the invented name. What was it?",
               "Give me back the made-up word.", "What name did I come up with?", "Which code name did I mention?"),
}
HELDOUT_RECALL_TEMPLATES: dict[str, tuple[str, ...]] = {
    "word": ("Remind me, which word was it?", "Earlier I gave you a word; what was it?", "Any idea what the word was?",
             "The word, what was it?"),
    "name": ("Remind me, what was that person called?", "Who was the person I brought up?", "And the name was?",
             "Whose name did I share with you?"),
    "number": ("Can you repeat the number from before?", "The number I gave you, what was it?",
               "Recall the code for me.", "What digits did I share?"),
    "place": ("Remind me, which town was it?", "Where was the place I spoke of?", "What was the location again?",
              "The place, what was it?"),
    "coined": ("Remind me, what was that invented name?", "The made-up word, what was it?",
               "What did I say it was called?", "Which coinage did I share?"),
}

# Ordinary user turns: questions, instructions and small talk. Training reads TURNS (with the base
# model's own replies as targets, so the memory learns to leave ordinary replies alone); the no-harm
# evaluation reads HELDOUT_TURNS only.
TURNS: tuple[str, ...] = (
    "What is the capital of Italy?", "How many legs does a spider have?", "What is 7 times 8?",
    "Who wrote Romeo and Juliet?", "What colour is the sky on a clear day?", "How many days are in a week?",
    "What is the boiling point of water in Celsius?", "Name a fruit that is yellow.", "What is 15 plus 27?",
    "Which planet is known as the red planet?", "What do bees make?", "How many continents are there?",
    "What is the largest ocean on Earth?", "Give me a synonym for happy.", "What is the opposite of cold?",
    "How many hours are in a day?", "What language is spoken in Brazil?", "What is the square root of 81?",
    "Write one sentence about the sea.", "Suggest a name for a pet goldfish.", "How do I boil an egg?",
    "Tell me a fun fact about cats.", "What should I pack for a beach trip?", "Describe a sunset in a few words.",
    "Can you recommend a good breakfast?", "How are you today?", "What is your favourite season and why?",
    "Explain what a rainbow is.", "What is the main ingredient of guacamole?", "How many sides does a hexagon have?",
    "What is the freezing point of water in Fahrenheit?", "Who painted the Mona Lisa?",
    "What is the chemical symbol for gold?", "Translate 'thank you' into Spanish.", "What is 100 divided by 4?",
    "List three primary colours.", "What do plants need to grow?", "Write a short greeting for a birthday card.",
    "What is the tallest animal in the world?", "How many minutes are in an hour?", "Why do leaves change colour?",
    "What is a good way to relax after work?", "Give me a tip for learning a new language.",
    "What is the capital of Japan?", "How many strings does a violin have?", "What is the largest planet?",
    "Complete the sentence: The early bird", "What is 12 minus 5?", "What instrument has black and white keys?",
    "Name an animal that lives in the Arctic.", "What is the plural of mouse?", "Tell me something about the moon.",
    "What is the speed of light, roughly?", "How do you make a cup of tea?", "What does a thermometer measure?",
    "Recommend a hobby for a rainy day.", "What is the past tense of run?", "How many players are on a soccer team?",
    "Write a haiku about autumn.", "What is the capital of Canada?", "Which is heavier, a kilogram of feathers "
    "or a kilogram of stone?", "What is photosynthesis?", "Say something kind to a friend.",
    "What is 9 squared?", "Who was the first person to walk on the moon?", "What is the largest mammal?",
    "What is the main language of Germany?", "Give me an example of a vegetable.", "How many weeks are in a year?",
    "Describe the taste of a lemon.", "What do you call a baby dog?", "What is the currency of the United Kingdom?",
    "Explain why we need sleep.", "What is the first month of the year?", "Suggest a title for a mystery novel.",
    "Hello! Can you help me plan my day?", "What is 3 plus 4?", "Where do penguins live?",
    "What is the longest river in Africa?", "How many letters are in the English alphabet?",
)
HELDOUT_TURNS: tuple[str, ...] = (
    "What is the capital of France?", "How long should I boil an egg?", "What is 6 times 7?",
    "Who wrote Hamlet?", "How many legs does a cat have?", "What is the largest desert in the world?",
    "Name a fruit that is red.", "What is 20 plus 22?", "Which planet is closest to the sun?",
    "What do cows drink?", "What is the opposite of tall?", "How many seconds are in a minute?",
    "What language is spoken in Mexico?", "What is the square root of 64?", "Write one sentence about the forest.",
    "Suggest a name for a pet rabbit.", "Tell me a fun fact about dogs.", "What should I pack for a ski trip?",
    "Explain what a cloud is.", "What is the main ingredient of bread?", "How many sides does a triangle have?",
    "Who painted the Starry Night?", "What is the chemical symbol for water?", "Translate 'hello' into French.",
    "What is 50 divided by 5?", "List three kinds of weather.", "Write a short note to thank a teacher.",
    "What is the fastest land animal?", "Why is the ocean salty?", "Give me a tip for sleeping better.",
    "What is the capital of Spain?", "How many keys does a piano have?", "Complete the sentence: Practice makes",
    "What is 15 minus 9?", "Name an animal that lives in the desert.", "What is the plural of child?",
    "How do you make pancakes?", "Recommend a book for a long flight.", "What is the past tense of swim?",
    "Write a haiku about winter.", "What is the capital of Australia?", "What is gravity?",
    "What is 8 squared?", "What is the smallest planet?", "What do you call a baby cat?",
    "What is the currency of Japan?", "Explain why we need water.", "What is the last month of the year?",
    "Where do kangaroos live?", "How many days are in a leap year?", "What is 2 plus 9?",
    "Give me an example of a mammal.", "Describe the smell of rain.", "What does a compass show?",
    "Hi there! What can you do?", "What is the tallest mountain in the world?",
)

# Everyday statements the write's switch trains to stay shut on, beside ``ran.tasks.texts.TRAIN_DISTRACTORS``:
# the first person, plans, chores, feelings (README, "What the write opens on"). None names a person, a place or
# a number, and none is an evaluation distractor or one of docs/tasks/write-validation.json's 60 (tests check).
EVERYDAY_DISTRACTORS: tuple[str, ...] = (
    "I left my scarf on the bus this morning.",
    "The kettle takes ages to boil in the mornings.",
    "He wrote a long letter to the local council.",
    "The label on the jar had faded in the sun.",
    "My teacher gave us extra homework again.",
    "The cat knocked a glass off the table.",
    "We spent the afternoon cleaning out the garage.",
    "Her phone kept buzzing during the film.",
    "The bread was still warm from the oven.",
    "The roof started leaking after the heavy rain.",
    "I finally finished the book I was reading.",
    "The neighbours' dog barked all night long.",
    "He painted a small picture of the harbour at dusk.",
    "The shop on the corner sells the best sandwiches.",
    "We missed the last bus and had to walk.",
    "The printer ran out of ink in the middle of my report.",
    "The garden looks lovely after the rain.",
    "Somebody parked in front of our driveway again.",
    "The soup was too spicy for the children.",
    "My boss asked me to stay late tonight.",
    "The washing machine makes a strange noise.",
    "They talked about politics over dinner.",
    "I can't find the charger for my laptop.",
    "The movie was much longer than I expected.",
    "He spilled coffee all over his notes.",
    "We painted the bedroom over the weekend.",
    "The train was packed with commuters.",
    "A bird built a nest above our front door.",
    "The water in the lake was freezing cold.",
    "She laughed at the joke for a full minute.",
    "The cinema was almost empty on a weeknight.",
    "I burned the toast while answering an email.",
    "The doctor said I should drink more water.",
    "Our car needs new tyres before winter.",
    "The kids played in the snow until dark.",
    "He told a funny story about his first job.",
    "The milk in the fridge has gone sour.",
    "We had a picnic by the river last summer.",
    "The traffic was terrible on the way home.",
    "My sister borrowed my jacket and never returned it.",
    "The concert tickets sold out within an hour.",
    "The bakery closes at noon on holidays.",
    "I need to renew my library card soon.",
    "The wind blew the umbrella inside out.",
    "She keeps a diary by her bed.",
    "The pasta needs another few minutes.",
    "We could hear the sea from our room.",
    "The power went out during dinner.",
    "The sign on the door said the shop was closed.",
    "The message on the board was about the school trip.",
    "Our teacher drew a map of the old town on the board.",
    "The newspaper printed a story about the flood.",
    "I heard a strange song on the radio today.",
    "She named every chapter after a season.",
    "The menu had changed since our last visit.",
    "The plants on the balcony need watering.",
    "He fell asleep on the sofa after lunch.",
    "The school bell rang earlier than usual.",
    "I spent the whole evening sorting old photos.",
    "The ice cream melted before we got home.",
    "The baby smiled at everyone in the room.",
    "We argued about whose turn it was to cook.",
    "The hallway smells of fresh flowers.",
    "My grandfather fixed the old radio himself.",
    "The candles made the room feel warm.",
    "The lecture was about the history of bridges.",
    "I forgot to buy eggs at the market.",
    "She wrote a note and left it on the counter.",
    "The team practised in the rain.",
    "The dishwasher is full again.",
    "He carried the boxes up three flights of stairs.",
    "Our cat sleeps on the warm windowsill.",
    "The paint on the gate is peeling.",
    "We laughed about it for days afterwards.",
    "The photocopier jammed twice this morning.",
    "The river rose after the storm.",
    "My neighbour lent me his ladder.",
    "The postman was late again today.",
    "I watched the sunset from the balcony.",
    "The children drew pictures of their pets.",
    "The smell of coffee filled the kitchen.",
    "She won a prize for her drawing.",
    "The film ended with a long chase.",
    "The bridge was closed for painting.",
    "He ordered the same dish as always.",
    "We found an old coin in the garden.",
    "The store was giving away free samples.",
    "My shoes are still wet from yesterday.",
    "The music at the party was too loud.",
    "They cancelled the picnic because of the wind.",
    "The clock stopped at a quarter past three.",
    "I lost my sunglasses at the beach.",
    "The bus driver waited for us.",
    "The soup kitchen needs more volunteers.",
    "He cooked dinner for the whole family.",
    "She forgot where she had parked the car.",
    "The fence blew down in the night.",
    "The bookshop has a cat that sleeps in the window.",
    "The tomatoes are finally turning red.",
    "I spent an hour on hold with the bank.",
    "The kids were excited about the trip.",
    "He learned to juggle over the summer.",
    "The pool was closed for cleaning.",
    "We stayed up late playing cards.",
    "The office coffee machine is broken again.",
    "The old oak tree lost a branch in the storm.",
    "My brother cooked pancakes for breakfast.",
    "The streets were quiet after midnight.",
    "She signed the card for everyone.",
    "The audience clapped for a long time.",
    "I put the keys in my coat pocket.",
    "The bathroom tap keeps dripping.",
    "The cake recipe needs more sugar.",
    "The crowd cheered when the team scored.",
    "He left a voicemail that I never heard.",
    "We picked apples at the farm on the hill.",
    "The heater makes the room too dry.",
    "The classroom windows were wide open.",
    "A squirrel stole the bread from the bird table.",
    "The runners set off at dawn.",
    "I cleaned the windows this afternoon.",
    "The stairs creak when you walk on them.",
    "She packed her bag the night before.",
    "My coffee went cold while I was reading.",
    "The bus stop moved to the other side of the road.",
    "Someone trimmed the hedges along the lane.",
    "He dropped his phone in the sink.",
    "We finished the puzzle after three evenings.",
    "The shop window was full of winter coats.",
    "The children built a snowman in the yard.",
    "The bakery smelled of cinnamon.",
    "I got caught in the rain without a coat.",
    "The new sofa arrived a day early.",
    "They painted a mural on the school wall.",
    "The train stopped in the middle of a field.",
    "The dog buried a bone under the roses.",
    "My friend told me a secret about her work.",
    "The mirror in the hall is slightly crooked.",
    "She hummed a tune while washing the dishes.",
    "The storm kept everyone indoors.",
    "I tried a new recipe for dinner.",
    "The wallpaper in the kitchen is peeling off.",
    "He wrote the shopping list on the back of an envelope.",
    "We walked the dog around the block.",
    "The coffee shop was crowded at lunchtime.",
    "The fridge door does not close properly.",
    "The students asked a lot of questions.",
    "The sun finally came out after a grey week.",
    "My aunt sent a parcel full of biscuits.",
    "The neighbours planted a row of trees.",
    "The bus was cancelled without warning.",
    "The kitchen floor needs mopping.",
    "She practised her speech in front of the mirror.",
    "We found a quiet table by the window.",
    "The tap water tastes a bit strange today.",
    "He mended the torn sleeve of his shirt.",
    "The teacher was pleased with the class.",
    "The sky turned orange just before sunset.",
    "I accidentally deleted a whole folder of photos.",
    "The baker gave us a free loaf.",
    "The market was busier than usual.",
    "The grass needs cutting again.",
    "She borrowed a ladder to reach the top shelf.",
    "The meeting room was too warm.",
    "They drove through the night to get home.",
    "The doorbell rang while I was in the shower.",
    "A moth flew in through the open window.",
    "The dentist said my teeth are fine.",
    "He forgot to set his alarm.",
    "The children were quiet for once.",
    "We shared a pot of tea on the porch.",
    "The paint dried faster than expected.",
    "My laptop restarted in the middle of a call.",
    "The caf\u00e9 ran out of croissants early.",
    "The wind rattled the windows all night.",
    "She tidied her desk before leaving.",
    "The football match went into extra time.",
    "I left the oven on for an hour by mistake.",
    "The path through the woods was muddy.",
    "He wore a bright yellow raincoat.",
    "The clouds cleared by the afternoon.",
    "Our plans changed at the last minute.",
    "The cashier counted the change twice.",
    "The baby woke up twice in the night.",
    "The chairs in the hall were stacked away.",
)

# Plain text for the perplexity check (held out from training, which reads none of it).
HELDOUT_TEXTS: tuple[str, ...] = (
    "The village sat at the edge of a wide valley, where the river slowed and spread into marshes. Every spring "
    "the water rose, and the farmers moved their animals to the higher fields until it fell again.",
    "To make a simple tomato sauce, soften an onion in olive oil, add chopped tomatoes and a pinch of salt, and "
    "let it simmer for twenty minutes. Stir now and then so it does not catch on the bottom of the pan.",
    "Bicycles are one of the most efficient ways to travel short distances. A rider can cover several kilometres "
    "in a few minutes while using very little energy, and the bicycle itself needs no fuel.",
    "The library was quiet except for the soft turning of pages. Near the window, an old man read a newspaper, "
    "while two students whispered over a map spread across the table.",
    "Volcanoes form where molten rock rises from deep inside the Earth. When pressure builds up, the magma can "
    "break through the surface, sending ash and lava into the surrounding land.",
    "Good sleep depends on regular habits. Going to bed at the same time each night, keeping the bedroom dark, "
    "and avoiding screens before sleep can all help the body rest.",
    "The train slowed as it entered the mountains. Snow covered the pine trees on both sides of the track, and "
    "the passengers pressed their faces to the windows to watch.",
    "Honeybees live in colonies with a single queen. The workers collect nectar and pollen, build the wax comb, "
    "and care for the young, while the queen lays thousands of eggs.",
    "When the storm finally passed, the streets were full of broken branches. Neighbours came out with brooms "
    "and saws, and by the evening most of the roads were clear again.",
    "A good cup of coffee starts with fresh beans. Grinding them just before brewing keeps the flavour, and water "
    "that is hot but not boiling brings out the taste without bitterness.",
    "The museum's new exhibition shows tools from the stone age. Visitors can hold copies of axes and scrapers "
    "and see how early people shaped them from flint.",
    "Learning to swim takes patience. Most beginners start by floating on their backs, then practise kicking "
    "while holding the edge of the pool before they try a full stroke.",
    "The market opened at dawn. Traders set out baskets of apples, fresh bread and cheese, and the smell of "
    "roasting nuts drifted across the square.",
    "Rainforests cover a small part of the planet but hold a large share of its species. Many plants found there "
    "are used in medicine, and scientists still discover new animals every year.",
    "After dinner, the family gathered in the living room to play cards. The youngest child won the first round "
    "and refused to stop playing until everyone else had won once.",
    "Lighthouses once guided ships along dangerous coasts. Today most of them run automatically, but a few still "
    "have keepers who climb the stairs every evening to check the lamp.",
)

# What a message may open with before a store phrasing (``MemoryTask.opener_rate``, training only). The built-in
# task keeps their words out of the vocabulary values (``ran.remember.builtin_task``); each is already in the task's
# other texts, so the values drawn are the same, and none is the first word of a held-out store phrasing (tests check).
# The first 27 are r71's; the last 15 (r72) open with a contraction ("Can" "'t") or a word that could be a name
# ("Mark", "Will"), so that a first token the read gate never saw ("Don" of "Don't") is not taken for a value.
OPENERS: tuple[str, ...] = (
    "Okay, ", "So, ", "Right, ", "Hey, ", "Now, ", "By the way, ", "Before I forget, ", "Just so you know, ",
    "Good news: ", "Between us, ", "Fun fact: ", "Thanks! ", "Hi! ", "Hello, ", "Morning! ", "In other news, ",
    "Side note: ", "Good morning! ", "Nice, ", "Fine, ", "Next, ", "First, ", "To be clear, ", "Remember, ", "Note: ",
    "Important: ", "Good, ",
    "Can't tell you why, ", "Won't take long: ", "Let's see, ", "Let's do this: ", "It's me again: ", "That's it, ",
    "That's funny, ", "I'm back! ", "I'll be quick: ", "I'd say, ", "Mark my words: ", "Will do! ", "Mind you, ",
    "Tell you what, ", "Say, ",
)
